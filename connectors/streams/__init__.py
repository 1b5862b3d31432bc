"""Redis Streams input of the worker: the entry codec, the producer and the Bytewax source (docs/worker-input.md)."""
