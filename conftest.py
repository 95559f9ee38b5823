# Doctest collection imports every module under src/; the entry point would run the CLI.
collect_ignore = ["src/lrlab/__main__.py"]
