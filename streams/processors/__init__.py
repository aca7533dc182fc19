"""Stream processors on aiokafka consumer groups. (A Faust "agent" is a processor; here "agent" means an LLM agent.)"""
