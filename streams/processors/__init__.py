"""Faust stream processors. (In Faust these are "agents"; here that word means LLM agents.)"""
