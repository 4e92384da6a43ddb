"""Service layer: functions that take a session and return objects or raise domain errors.

Routes, the CLI and scripts all call these; none of them writes to the
database another way.  Each import runs inside the caller's transaction,
so a failure at any feature leaves nothing written.
"""
