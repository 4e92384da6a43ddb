"""What README.md and docs/*.md tell a user to type exists, as written.

Newcomers (and the service's checks) follow the documentation literally, so
every command line in it is resolved against the code, without a database:

* every ``gridmap ...`` line of a fenced block, every inline ```gridmap ...```
  and every line of README's command synopsis is split with :mod:`shlex`,
  placeholders (``CODE``, ``FILE``) are replaced by the example values of
  :data:`EXAMPLES`, and the line is parsed by the real click tree
  (``make_context``/``resolve_command``): an unknown command, option or
  choice fails the test, and so does a value click refuses;
* every ``GRIDMAP_*`` variable the docs name is read by the code, and every
  setting the code reads is documented in README's configuration table;
* every ``scripts/...`` named exists, and the options the docs give a
  Python script appear in its ``--help``;
* every API or page path the docs write (``/api/...``, ``/parks/...``) matches a
  rule of ``app.url_map`` for the method the docs give it (any method when
  none is written), and the query parameters and filters the docs give a JSON
  API path are declared in its OpenAPI document, with the documented ``limit``;
* every command of the click tree is in README's synopsis, every option in
  some document, and README's defaults of the settings are the code's.

Synopsis notation: ``[...]`` is optional, ``a|b`` (and ``--a/--b``) are
alternatives, ``...`` elides; the optional parts are parsed too, taking the
first of each set of alternatives, and every alternative option and choice is
checked to exist.
"""

import re
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import MISSING, fields
from pathlib import Path

import click
import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from geodata.cli import main
from geodata.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: The documented example value each placeholder of a synopsis stands for.
EXAMPLES = {
    "CODE": "FGKFQ", "P": "FGKFQ", "PARK": "FGKFQ", "ID": "12", "ID|CODE": "12",
    "FILE": "layer.gpkg", "F": "out.json", "G": "grids.gpkg", "E": "enterprises.csv",
    "FILE.pdf": "boards.pdf", "FILE.xlsx": "requests.xlsx", "FILE.csv": "requests.csv",
    "F.xlsx": "week.xlsx", "CRS": "EPSG:4547", "W": "0.5", "N": "2", "M": "100", "T": "4",
    "S": "1", "H": "0.0.0.0", "URL": "tcp://127.0.0.1:8786", "HOST": "127.0.0.1",
    "tcp://HOST:PORT": "tcp://127.0.0.1:8786", "USER": "inspector", "NAME": "alice",
    "ROLE": "inspector", "TARGET": "rectifying", "LAYER": "grids", "PHONE": "0394-5211234",
    "CREDIT_CODE": "91411621MA00000001", "KIND": "visit", "D": "2026-11-01",
    "ISO": "2026-11-01", "YYYY-MM-DD": "2026-11-01", "METRIC=WEIGHT": "satisfaction=40",
    "TOKEN_NAME": "phone", "C": "用工", "..": "note",
}

#: Placeholder values of an option, where one letter means something else per option.
OPTION_EXAMPLES = {
    "--status": "open", "--source": "visit", "--base-url": "https://gridmap.example.cn",
    "--scheduler": "tcp://127.0.0.1:8786", "--seed": "1", "--port": "8080",
}

#: Placeholders that stand for something else in one command.
COMMAND_EXAMPLES = {"requests transition": {"TARGET": "assigned"}}

#: Commands the docs give as examples of what is refused (security.md), with the message.
REFUSED = {"gridmap demo --seed -1": "-1 is not in the range x>=0"}

#: Variables the docs name that the code does not read from its settings, and who does.
NOT_SETTINGS = {
    "GRIDMAP_TEST_POSTGIS_URL": "tests/conftest.py",
    "GRIDMAP_COMPLETE": "click's shell completion (_GRIDMAP_COMPLETE)",
    "GRIDMAP_ACTOR": "geodata/cli/edit.py",
    "GRIDMAP_WALK_SEED": "tests/test_edit_sequences.py",
    "GRIDMAP_WALK_STEPS": "tests/test_edit_sequences.py",
    "GRIDMAP_": "the prefix itself",
}

PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*(?:[.=][A-Za-z0-9_]+)?|YYYY-MM-DD|\.\.)$")


def _docs_text():
    return {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
            for path in DOCS}


def _fenced_blocks(text):
    """Yield (first line number, lines) of every fenced block of ``text``."""
    lines = text.splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if start is None:
                start = number
            else:
                yield start + 1, lines[start:number - 1]
                start = None


def _outside_blocks(text):
    """``text`` with its fenced blocks blanked out (inline spans only)."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _join_continuations(lines, first):
    """(line number, line) of ``lines`` (starting at ``first``) with ``\\`` lines joined."""
    joined, current, start = [], "", first
    for number, line in enumerate(lines, first):
        if current:
            current += " " + line.strip()
        else:
            current, start = line, number
        if current.endswith("\\"):
            current = current[:-1]
            continue
        joined.append((start, current))
        current = ""
    return joined


def _strip_comment(line):
    return re.split(r"\s#\s|\s{3,}#", line, maxsplit=1)[0].rstrip()


def gridmap_lines():
    """Every documented ``gridmap`` command line: (where, text)."""
    found = []
    for name, text in _docs_text().items():
        blocks = list(_fenced_blocks(text))
        # Markdown's indented code blocks (four blanks) hold commands too (map.md).
        blocks += [(number, [line]) for number, line in enumerate(text.splitlines(), 1)
                   if line.startswith("    gridmap ")]
        for first, block in blocks:
            if name == "README.md" and block and block[0].startswith("gridmap [--db URL]"):
                found.extend(_readme_synopsis(block, first))
                continue
            for number, line in _join_continuations(block, first):
                line = _strip_comment(line.strip())
                line = re.sub(r"^(\.venv/bin/|~/gridmap-venv/bin/|\$ )", "", line)
                for part in re.split(r"\s&&\s", line):
                    part = re.sub(r"^\S*/bin/", "", part.strip())
                    if part.startswith("gridmap ") or part == "gridmap":
                        found.append((f"{name}:{number}", part))
        flat = re.sub(r"\s+", " ", _outside_blocks(text))
        for span in re.findall(r"`(gridmap [^`]+)`", flat):
            found.append((f"{name} (inline)", span))
        # serve-demo.sh hands its arguments to `gridmap serve` (README).
        for args in re.findall(r"bash scripts/serve-demo\.sh( -[^`\n]*)", text):
            found.append((f"{name} (serve-demo.sh)", "gridmap serve" + args.rstrip()))
    return found


def _readme_synopsis(block, first):
    """README's ``gridmap [--db URL] [--debug] COMMAND`` block, one entry per command."""
    entries = []
    for offset, line in enumerate(block[1:], 1):
        stripped = line.strip()
        # The description column starts after a run of blanks; a line of description
        # alone is indented past the synopsis and starts with a word.
        if not stripped or (line.startswith(" " * 10) and not stripped.startswith(("[", "|"))):
            continue
        synopsis = re.split(r"\s{3,}", stripped)[0]
        if line.startswith(" " * 3):
            where, text = entries[-1]
            entries[-1] = (where, f"{text} {synopsis}")
        else:
            entries.append((f"README.md:{first + offset}", f"gridmap {synopsis}"))
    return entries


def _tokens(text):
    text = text.replace("…", "...").replace("[", " [ ").replace("]", " ] ")
    return shlex.split(text)


def _group_children(command):
    return command.commands if isinstance(command, click.Group) else {}


def _resolve(tokens):
    """(command path, leaf command, index of its first argument) for ``tokens``."""
    command, path, index = main, ["gridmap"], 1
    while index < len(tokens) and tokens[index] in ("--db", "--debug"):
        index += 2 if tokens[index] == "--db" else 1
    while isinstance(command, click.Group) and index < len(tokens):
        token = tokens[index]
        names = re.split(r"[|/]", token)
        if token in ("[", "]"):
            index += 1
            continue
        if not all(n in command.commands for n in names):
            break
        command = command.commands[names[0]]
        path.append(names[0])
        index += 1
    return path, command, index


def _options(command):
    names = {}
    for param in command.params:
        for name in (*param.opts, *param.secondary_opts):
            names[name] = param
    return names


def _check_options(where, text, tokens, command):
    """Every option and option choice written in ``tokens`` exists on ``command``."""
    options = {**_options(command), **_options(main), "--help": None}
    for child in _group_children(command).values():
        # Prose naming a group and an option of its commands (`gridmap edit --if-match`).
        options = {**_options(child), **options}
    problems = []
    for i, token in enumerate(tokens):
        for name in re.split(r"[|/]", token):
            if not name.startswith("--"):
                continue
            name = name.split("=")[0]
            if name not in options:
                problems.append(f"{where}: `{text}`: no option {name}")
                continue
            param = options[name]
            if param is None:
                continue
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
            if isinstance(param.type, click.Choice) and not param.is_flag:
                for choice in value.split("|"):
                    if (not PLACEHOLDER.match(choice) and choice != "..."
                            and choice not in param.type.choices):
                        problems.append(f"{where}: `{text}`: {name} has no choice {choice!r}")
    return problems


def _first_alternatives(tokens):
    """The tokens with brackets opened, the first of each ``a|b`` and ``x | y``."""
    out, skip = [], False
    for token in tokens:
        if token in ("[", "]"):
            skip = False
            continue
        if token == "|":
            skip = True
            continue
        if skip:
            continue
        if token in ("...",):
            continue
        if "|" in token and not PLACEHOLDER.match(token):
            token = token.split("|")[0]
        if re.fullmatch(r"--[a-z-]+/--[a-z-]+", token):
            token = token.split("/")[0]
        out.append(token)
    return out


def _substitute(tokens, command, path):
    options = _options(command)
    overrides = COMMAND_EXAMPLES.get(" ".join(path[1:]), {})
    out, unknown = [], []
    for token in tokens:
        previous = out[-1] if out else ""
        param = options.get(previous)
        if token in overrides:
            out.append(overrides[token])
        elif token in EXAMPLES:
            if param is not None and isinstance(param.type, click.Choice):
                out.append(param.type.choices[0])
            elif previous in OPTION_EXAMPLES:
                out.append(OPTION_EXAMPLES[previous])
            elif token in EXAMPLES:
                out.append(EXAMPLES[token])
            else:
                out.append(EXAMPLES[token])
        elif PLACEHOLDER.match(token) and token.isupper() and len(token) < 4:
            unknown.append(token)
            out.append(token)
        else:
            out.append(token)
    return out, unknown


def _parse(tokens):
    """Parse ``tokens`` (``gridmap`` first) with the click tree; return the leaf context."""
    ctx = main.make_context("gridmap", list(tokens[1:]))
    rest = list(tokens[1:])
    while rest and rest[0] in ("--db", "--debug"):
        rest = rest[2:] if rest[0] == "--db" else rest[1:]
    command = main
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


LINES = gridmap_lines()


def test_the_docs_name_commands():
    """The extraction finds the documented commands (a broken extractor checks nothing)."""
    texts = [text for _, text in LINES]
    assert len(LINES) > 100
    assert any(t.startswith("gridmap import grids park.gpkg") for t in texts)
    assert any(t.startswith("gridmap users add|list") for t in texts)


def _split_chains(text):
    """``users list [...] | set-role NAME ROLE | token NAME``: one line per command."""
    tokens = _tokens(text)
    path, command, index = _resolve(tokens)
    parent_path, parent, _ = _resolve(tokens[:index - 1])
    starts = [i + 1 for i, t in enumerate(tokens)
              if t == "|" and i + 1 < len(tokens) and tokens[i + 1] in _group_children(parent)]
    if not starts or len(path) < 2:
        return [tokens]
    pieces, begin = [], index - 1
    for start in starts:
        pieces.append(tokens[:index - 1] + tokens[begin:start - 1])
        begin = start
    pieces.append(tokens[:index - 1] + tokens[begin:])
    return pieces


@pytest.mark.parametrize("where, text", LINES, ids=[f"{w}:{t[:60]}" for w, t in LINES])
def test_every_documented_command_parses(where, text):
    """Resolve the line against the click tree: names, options, choices and values."""
    for tokens in _split_chains(text):
        _check_line(where, text, tokens)


def _check_line(where, text, tokens):
    path, command, index = _resolve(tokens)
    problems = []
    if isinstance(command, click.Group) and index < len(tokens) and not tokens[index].startswith(
            ("-", "[")) and tokens[index] not in ("...",):
        problems.append(f"{where}: `{text}`: no command {' '.join(path)} {tokens[index]}")
    problems += _check_options(where, text, tokens[index:], command)
    assert not problems, "\n".join(problems)
    if isinstance(command, click.Group) or any(
            re.search(r"[|/]", t) for t in tokens[1:index]):
        return  # a group named in prose, or "list|show|...": each is parsed where written out
    args, unknown = _substitute(_first_alternatives(tokens), command, path)
    assert not unknown, f"{where}: `{text}`: give {unknown} an example value in EXAMPLES"
    if text in REFUSED:
        with pytest.raises(click.BadParameter, match=re.escape(REFUSED[text])):
            _parse(args)
        return
    try:
        _parse(args)
    except click.UsageError as exc:
        # Prose names an option without its value ("`gridmap check --threads`"),
        # or elides required parts ("weekly assign ... --request"): the names
        # and choices were checked above, and the parse up to there.
        prose = "(inline)" in where and (isinstance(exc, click.MissingParameter) or (
            args[-1].startswith("--") and "requires an argument" in exc.format_message()))
        elided = "..." in tokens and isinstance(exc, click.MissingParameter)
        if not (prose or elided):
            pytest.fail(f"{where}: `{text}` (parsed as {shlex.join(args)}): "
                        f"{exc.format_message()}")


def _settings_variables():
    """``GRIDMAP_*`` variables :class:`geodata.config.Settings` reads (one per field)."""
    return {f"GRIDMAP_{f.name.upper()}" for f in fields(Settings)}


def test_every_documented_variable_is_read():
    """A ``GRIDMAP_*`` the docs name is a setting (or read by the place NOT_SETTINGS names)."""
    named = {}
    for name, text in _docs_text().items():
        for variable in re.findall(r"GRIDMAP_[A-Z0-9_]*", text):
            named.setdefault(variable, name)
    unread = {v: where for v, where in named.items()
              if v not in _settings_variables() and v not in NOT_SETTINGS}
    assert not unread, f"variables the docs name and no code reads: {unread}"
    for variable, reader in NOT_SETTINGS.items():
        if variable != "GRIDMAP_" and reader.endswith(".py"):
            assert variable in (ROOT / reader).read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table():
    """Each variable the code reads has a row in README's configuration table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):readme.index("## Development")]
    first_cells = re.findall(r"^\| ([^|]*) \|", table, re.M)
    rows = {name for cell in first_cells
            for name in re.findall(r"`(GRIDMAP_[A-Z0-9_]+|SPATIALITE_LIBRARY_PATH)`", cell)}
    missing = (_settings_variables() | {"SPATIALITE_LIBRARY_PATH", "GRIDMAP_ACTOR"}) - rows
    assert not missing, f"settings without a row in README's configuration table: {missing}"


def _script_mentions():
    """(doc, script path, the options written after it) for every script the docs name."""
    found = []
    for name, text in _docs_text().items():
        flat = re.sub(r"[ \t]+", " ", text)
        for script, rest in re.findall(r"(scripts/[\w.-]+\.(?:py|sh))([^\n`]*)", flat):
            options = []
            if script.endswith(".py") and re.search(r"python " + re.escape(script), flat):
                options = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest.split("#")[0])
            found.append((name, script, tuple(options)))
    return found


def test_every_documented_script_exists_and_takes_its_options():
    """``python scripts/x.py --opt`` in the docs: the file exists and its --help lists --opt."""
    mentions = _script_mentions()
    assert any(options for _, _, options in mentions)
    helps, problems = {}, []
    for name, script, options in mentions:
        if not (ROOT / script).is_file():
            problems.append(f"{name}: {script} does not exist")
            continue
        if not options:
            continue
        if script not in helps:
            helps[script] = subprocess.run(
                [sys.executable, str(ROOT / script), "--help"], cwd=ROOT, capture_output=True,
                text=True, check=True).stdout
        problems += [f"{name}: {script} has no option {o}" for o in options
                     if not re.search(re.escape(o) + r"\b", helps[script])]
    assert not problems, "\n".join(problems)


def test_every_script_is_in_the_readme():
    """Each benchmark script is listed in README's benchmark table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(scripts/bench_\w+\.py)` \|", readme, re.M))
    present = {p.relative_to(ROOT).as_posix() for p in (ROOT / "scripts").glob("bench_*.py")}
    assert present == listed


#: Example values of the path placeholders the docs write.
PATH_EXAMPLES = {"code": "FGKFQ", "park": "FGKFQ", "grid": "FGKFQ-007",
                 "credit code": "91411621MA00000001", "id": "12", "week": "2026-W48",
                 "z": "14", "x": "13400", "y": "6500", "featureId": "12", "hazard-<code>": "x"}

#: A path at the start of a code span, or after the method written before it (in the
#: same table row or line); file paths (``docs/map.md``) are neither.
PATH = re.compile(r"(?:\b(GET|POST|PUT|PATCH|DELETE|HEAD)(?: *\| *)? +`?|`)(/(?:api|parks|ogcapi|m"
                  r"|login|logout|healthz|readyz)\b(?:<credit code>|[/\w<>{}|.…*-]|\[/[^\]]*\])*)")

#: Paths the docs give as examples of what is refused (security.md): no route matches.
REFUSED_PATHS = {"/api/hazards/01"}


def _documented_paths():
    found = set()
    for name, text in _docs_text().items():
        for method, path in PATH.findall(text):
            found.add((name, method, path))
    return found


def _concrete(path):
    """Each concrete URL ``path`` stands for (alternatives and optional parts expanded)."""
    if "…" in path or "*" in path or "..." in path or path == "/api":
        return []  # a prefix standing for many routes ("/api/**", "…/items/01")
    for name, value in PATH_EXAMPLES.items():
        path = path.replace(f"<{name}>", value).replace(f"{{{name}}}", value)
    optional = re.search(r"\[([^\]]*)\]", path)
    if optional:
        return (_concrete(path[:optional.start()] + path[optional.end():])
                + _concrete(path[:optional.start()] + optional.group(1) + path[optional.end():]))
    alternatives = re.search(r"([\w.-]*)\|([\w.|-]*)", path)
    if alternatives:
        head = path[:alternatives.start()]
        choices = alternatives.group(0).split("|")
        # "ledger.csv|.xlsx": an alternative starting with "." replaces the suffix only.
        stem = choices[0].rsplit(".", 1)[0] if choices[1].startswith(".") else ""
        return [c for choice in choices for c in _concrete(
            head + (stem + choice if choice.startswith(".") else choice)
            + path[alternatives.end():])]
    assert "<" not in path and "{" not in path, f"give {path} an example in PATH_EXAMPLES"
    return [path.rstrip(".")]


def test_every_documented_path_is_a_route(spatialite_template):
    """Each API or page path of the docs matches a URL rule for the method written with it."""
    from webmap import create_app

    # The URL rules do not depend on the backend: the template file is enough.
    app = create_app({"DATABASE_URL": f"sqlite:///{spatialite_template}"})
    adapter = app.url_map.bind("localhost")
    paths = _documented_paths()
    assert len(paths) > 100
    problems = []
    for name, method, written in sorted(paths, key=str):
        for path in _concrete(written):
            if path in REFUSED_PATHS:
                with pytest.raises(NotFound):
                    adapter.match(path, method=method or "GET")
                continue
            try:
                adapter.match(path, method=method or "GET")
            except MethodNotAllowed:
                if not method:
                    continue  # named in prose without a method: a rule exists
                problems.append(f"{name}: {method} {written} ({path}): method not allowed")
            except NotFound:
                problems.append(f"{name}: {method} {written} ({path}): no such route")
            except RequestRedirect:
                pass  # "/ogcapi" answers with a redirect to "/ogcapi/", as documented
    assert not problems, "\n".join(problems)


def _leaf_commands(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield " ".join((*path, name))


def test_every_command_is_in_the_readme_synopsis():
    """README's command synopsis names every command of the click tree (a group's
    commands may be named by the group, as ``requests ... categories``)."""
    named = set()
    for where, text in LINES:
        if not re.match(r"README\.md:\d+$", where):
            continue
        tokens, command, path = _tokens(text), main, []
        for token in tokens[1:]:
            names = re.split(r"[|/]", token)
            if not isinstance(command, click.Group) or not all(
                    n in command.commands for n in names):
                break
            named.update(" ".join((*path, n)) for n in names)
            command, path = command.commands[names[0]], [*path, names[0]]
    missing = [c for c in _leaf_commands(main)
               if not any(c == n or c.startswith(n + " ") for n in named)]
    assert not missing, f"commands missing from README's synopsis: {missing}"


def test_the_readme_names_every_csv_table():
    """README's list of commands taking ``--format csv`` is the tree's."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Every command with machine-readable")
    sentence = re.sub(r"\s+", " ", readme[start:readme.index("text tables start with", start)])
    for name in _leaf_commands(main):
        command = main
        for part in name.split():
            command = command.commands[part]
        fmt = _options(command).get("--format")
        if fmt is not None and "csv" in fmt.type.choices:
            group = name.split()[0]
            assert f"`{name}`" in sentence or f"`{group}` lists" in sentence, name


def _openapi_query_parameters(app):
    """``{(method, rule path): {name: schema}}`` of the query parameters the API declares."""
    document = app.test_client().get("/api/openapi.json").json
    declared = {}
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method == "parameters":
                continue
            declared[(method.upper(), re.sub(r"\{[^}]+\}", "{}", path))] = {
                p["name"]: p.get("schema", {}) for p in shared + operation.get("parameters", [])
                if p.get("in") == "query"}
    return declared


def test_documented_query_parameters_are_declared(spatialite_template):
    """The filters and ``?name=`` parameters the docs give an API path are the ones it
    declares (an undeclared one is 422 ``unknown_parameter``), with the documented
    ``limit`` maximum."""
    from webmap import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{spatialite_template}"})
    declared = _openapi_query_parameters(app)
    checked, problems = 0, []
    for name, text in _docs_text().items():
        for line in text.splitlines():
            row = re.match(r"\| (GET) \| `(/api/[^`?]+)(?:\?([^`]*))?` \| (.*)", line)
            spans = re.findall(r"`(?:GET )?(/api/[^`?\s]+)\?([^`\s]*)`", line)
            found = [("GET", path, query, "") for path, query in spans]
            if row:
                found.append(row.groups())
            for method, path, query, notes in found:
                rule = re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)
                params = declared.get((method, rule))
                if params is None:
                    continue  # not a JSON API path (test_every_documented_path_is_a_route)
                names = re.findall(r"(?:^|&)([a-z_]+)=", query or "")
                filters = re.search(r"filters (.*?)(?:;|$)", re.sub(r" \([^)]*\)", "", notes))
                if filters:
                    names += re.findall(r"([a-z_]+)(?:, |$)", filters.group(1).replace("`", ""))
                maximum = re.search(r"limit`? \(1–([\d ]+)", notes)
                if maximum:
                    documented = int(maximum.group(1).replace(" ", ""))
                    if params.get("limit", {}).get("maximum") != documented:
                        problems.append(f"{name}: {path}: limit up to {documented}, declared "
                                        f"{params.get('limit')}")
                for parameter in names:
                    checked += 1
                    if parameter not in params:
                        problems.append(f"{name}: {method} {path}: no query parameter "
                                        f"{parameter!r} (declared: {sorted(params)})")
    assert checked > 20
    assert not problems, "\n".join(problems)


def test_every_option_is_documented():
    """Each option of each command appears in README or docs/*.md (a synopsis or prose)."""
    text = "\n".join(_docs_text().values())
    missing = []
    for name in _leaf_commands(main):
        command = main
        for part in name.split():
            command = command.commands[part]
        missing += [f"{name} {option}" for option in _options(command)
                    if option.startswith("--")
                    and not re.search(re.escape(option) + r"(?![\w-])", text)]
    assert not missing, f"options no document names: {missing}"


def test_the_readme_gives_each_setting_its_default():
    """README's default column is what :class:`Settings` takes when the variable is unset."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):readme.index("## Development")]
    defaults = {f"GRIDMAP_{f.name.upper()}": f.default for f in fields(Settings)
                if f.default is not MISSING}
    checked = 0
    for variable, default in re.findall(r"^\| `(GRIDMAP_[A-Z0-9_]+)` \| `?([^`|]*?)`? \|",
                                        table, re.M):
        if variable in defaults and defaults[variable] != "":
            expected = defaults[variable]
            written = {"false": False, "true": True}.get(default, default)
            if isinstance(expected, (int, float)) and not isinstance(expected, bool):
                written = float(written)
            assert written == expected, f"{variable}: README says {default}, code {expected}"
            checked += 1
    assert checked >= 10


def test_every_table_is_in_the_readme_data_model():
    """README's data model table names every table of the schema."""
    from geodata.models import Base

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    model = readme[readme.index("## Data model"):readme.index("## The demo park")]
    named = {name for cell in re.findall(r"^\| ([^|]*) \|", model, re.M)
             for name in re.findall(r"`(\w+)`", cell)}
    missing = sorted(t.name for t in Base.metadata.sorted_tables if t.name not in named)
    assert not missing, f"tables missing from README's data model: {missing}"


def test_every_service_and_model_module_is_in_the_readme_layout():
    """README's layout names each module of ``geodata/services`` and ``geodata/models``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for folder in ("services", "models"):
        row = re.search(rf"^\| `geodata/{folder}/` \|(.*)$", readme, re.M).group(1)
        named = set(re.findall(r"`(\w+)`", row))
        present = {p.stem if p.is_file() else p.name
                   for p in (ROOT / "geodata" / folder).iterdir()
                   if (p.suffix == ".py" or (p / "__init__.py").is_file())
                   and p.stem not in ("__init__", "base")}
        assert present <= named, f"geodata/{folder}: {sorted(present - named)} not in README"


def _slugs(heading):
    """GitHub's anchor of a Markdown heading, with and without superscript digits (10⁵)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    return {text, "".join(c for c in text if unicodedata.category(c) != "No")}


def test_every_local_link_resolves():
    """Links between the documents name files that exist and headings they hold."""
    problems = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", _outside_blocks(text)):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                problems.append(f"{path.name}: {target}: no such file")
                continue
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", _outside_blocks(
                    linked.read_text(encoding="utf-8")), re.M)
                if not any(anchor in _slugs(h) for h in headings):
                    problems.append(f"{path.name}: {target}: no such heading")
    assert not problems, "\n".join(problems)
