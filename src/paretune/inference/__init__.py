"""The one decoding engine of generative runs, and what shapes its output.

`generate`, `eval`, `pairs`, `bench-infer` and the HTTP server submit requests to it and read
tokens; it knows models, tokenizers and chat templates, never HTTP or run folders. It sits with
the tasks (the generation task answers through it), below config.
"""
