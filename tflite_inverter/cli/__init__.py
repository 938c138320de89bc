"""The command line: ``main`` (the parser, dispatch, exit codes), one module per command
(``inspect``, ``convert``, ``quantize``) and ``common`` (the epilog and shared flags)."""
