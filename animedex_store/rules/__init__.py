"""The rules every repository follows, written once: each operation as a coroutine over its
connections (:mod:`.operations`), the size cap (:mod:`.size_cap`) and single flight (:mod:`.flight`);
what they need of the side that runs them (:mod:`.runtime`, the blocking one, and
:mod:`.async_runtime`, with in-process flights), state kept per event loop (:mod:`.loops`) and the
repository's background thread (:mod:`.background`: lease renewals, idle connections). The sync
and the async repository are thin shells of I/O around them. Standard library only."""
