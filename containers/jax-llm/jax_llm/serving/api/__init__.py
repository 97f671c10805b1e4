"""The HTTP server for the built-in model: TGI's and OpenAI's schemas and routes, chat templates, metrics."""
