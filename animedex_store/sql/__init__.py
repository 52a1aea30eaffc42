"""The SQLAlchemy side: the tables (models and column types), every statement as a construct
compiled per dialect, engines for files, memory and servers, and the server connections.
Everything in here imports SQLAlchemy; the fast path never loads it."""
