"""Views of scores for people: the HTML report and search over score files.

Imports scale-out (to read a Ray output), writing, running, reading and the base modules.
"""
