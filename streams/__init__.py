"""The runtime on Kafka: the Faust app, topics, worker, processors, client and sink processors at the top;
the tooling (CLI, local stack, demos, benchmarks) in subpackages of its own.

`agents` is imported first: it switches litellm to its bundled model cost map before anything here
can import litellm, so no command ever reaches for the network at import.
"""

import agents  # noqa: F401
