"""Channels, token shards, the tokenizer, raw text and `prepare`."""
