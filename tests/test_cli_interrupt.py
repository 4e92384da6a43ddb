"""Ctrl-C (a real SIGINT to a real ``gridmap`` process) in the middle of a write (item 38).

``tests/test_write_faults.py`` raises ``KeyboardInterrupt`` inside the test
process; here the signal comes from outside, as an operator's Ctrl-C does:
the process is stopped at its second write statement, inside its
transaction, and interrupted there.  It must exit 130 with one line on
stderr and no traceback, the stored state must be what it was, and running
the same command again must give the result of an uninterrupted run.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import stored_snapshot, table_counts
from tests.test_write_faults import COMMANDS, park_p  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[1]

#: ``gridmap ARGS``, stopped at write statement number $GRIDMAP_TEST_STOP_AT until a signal
#: ends the sleep.  The pause is this test's only addition: the signal and its handling
#: (Python's default SIGINT handler, then gridmap's) are the real ones.
STOPPED_GRIDMAP = """
import os, re, sys, time
from sqlalchemy import event
from sqlalchemy.engine import Engine

at, seen = int(os.environ["GRIDMAP_TEST_STOP_AT"]), []

@event.listens_for(Engine, "before_cursor_execute")
def _stop(conn, cursor, statement, parameters, context, executemany):
    if re.search(r"\\b(INSERT|UPDATE|DELETE)\\b", statement.upper()):
        seen.append(statement)
        if len(seen) == at:
            print("STOPPED", flush=True, file=sys.stderr)
            while True:
                time.sleep(60)

from geodata.cli import main
sys.exit(main(prog_name="gridmap"))
"""


def _gridmap(db_url, args, stop_at=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if stop_at is None:
        return subprocess.run([sys.executable, "-m", "geodata.cli", "--db", db_url, *args],
                              capture_output=True, text=True, cwd=ROOT, env=env)
    return subprocess.Popen([sys.executable, "-c", STOPPED_GRIDMAP, "--db", db_url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**env, "GRIDMAP_TEST_STOP_AT": str(stop_at)})


@pytest.mark.parametrize("command", ["import grids", "edit split", "import grids --apply"])
def test_ctrl_c_inside_the_write_rolls_back_and_a_rerun_gives_the_same_result(
        park_p, db_url, engine, command):  # noqa: F811 (park_p is the imported fixture)
    args = [str(a) for a in COMMANDS[command](park_p)]
    before = stored_snapshot(engine)
    process = _gridmap(db_url, args, stop_at=2)
    before_stop = []
    for line in process.stderr:
        if line.strip() == "STOPPED":
            break
        before_stop.append(line)
    else:
        pytest.fail(f"{command} never reached its second write: {''.join(before_stop)}")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate()
    assert process.returncode == 130, err
    assert "interrupted: the write in progress was rolled back" in err
    assert "Traceback" not in out + err and out == ""
    assert stored_snapshot(engine) == before

    # Nothing of the interrupted run is left, so the re-run starts where an uninterrupted
    # run would have: it must work, and do the whole command.
    rerun = _gridmap(db_url, args)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_snapshot(engine) != before
    if command == "import grids":
        assert "imported 2 grids" in rerun.stdout
        assert table_counts(engine)["grids"] == before["grids"] + 2
