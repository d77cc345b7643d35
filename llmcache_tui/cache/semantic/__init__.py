"""Semantic caching: embedders, vector stores, request scope, and the guards that judge
candidates."""
