"""The ``kpi`` command line: local stack, migrations, tokens and operator tools."""
