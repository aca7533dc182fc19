"""LLM agents: specs, the offline simulator, the litellm call path and task runs. No Faust here.

litellm fetches its model cost map over the network at import unless told not to; agentstream must
work offline, so the switch is set before any module of this package imports litellm.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
