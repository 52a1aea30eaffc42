"""The rules every repository follows, written once: each operation as a coroutine over its
connections (:mod:`.operations`), the size cap (:mod:`.size_cap`) and single flight (:mod:`.flight`).
The sync and the async repository are thin shells of I/O around them. Standard library only."""
