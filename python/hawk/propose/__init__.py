"""Proposers: LLM clients, offline proposer, prompts, and program admission."""
