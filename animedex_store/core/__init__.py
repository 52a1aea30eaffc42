"""The vocabulary every layer shares: clocks, argument checks, defaults, result types, codecs and the
interface every engine's connections implement. Standard library only; no I/O."""
