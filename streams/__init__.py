"""The runtime on Kafka: topics, the worker, the client and the Kafka client factory at the top; the stream
processors, the memory sinks and the tooling (CLI, local stack, demos, benchmarks) in subpackages.

`agents` is imported first: it switches litellm to its bundled model cost map before anything here
can import litellm, so no command ever reaches for the network at import.
"""

import agents  # noqa: F401
