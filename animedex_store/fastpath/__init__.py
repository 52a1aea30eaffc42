"""The SQLite fast path, on the standard library alone: what a repository on an up-to-date cache
file runs. Naming the file, connecting and configuring ``sqlite3``, the frozen SQLite text of the
statements, the SQLite connection, and the decision to open a file here or hand it to the slow path."""
