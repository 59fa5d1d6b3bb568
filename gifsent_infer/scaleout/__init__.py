"""Scale-out on Ray: joining a cluster, the actor plan, shard files and their exactly-once
commit, and the distributed scoring pipeline.

Imports writing, running, reading and the base modules.
"""
