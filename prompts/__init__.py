"""Jinja prompt templates (shipped as package data of ``genre_agent.prompts``)."""
