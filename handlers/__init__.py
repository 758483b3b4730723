"""The built-in handlers ``mail``, ``http``, ``ssh`` and ``log``.

- :mod:`handlers.builtin`: ``register_builtin(registry)``, called by the composition root;
- :mod:`handlers.args`: the args-model helpers they share (``ArgsModel``, ``Templated``, ...);
- :mod:`handlers.mail`, :mod:`handlers.http` (with :mod:`handlers.ssrf`), :mod:`handlers.ssh`,
  :mod:`handlers.log`: one kind each.

Nothing is re-exported here, so importing a submodule never imports the others. Their
payloads are described in docs/job-documents.md.
"""
