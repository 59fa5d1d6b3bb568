"""Writing results: output paths, row sinks (CSV, JSONL, JSON) and one scoring run into a file
(score_to_file, resume).

Imports running, reading and the base modules.
"""
