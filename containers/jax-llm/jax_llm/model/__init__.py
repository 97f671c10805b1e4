"""The GPT, its config and the export format."""
