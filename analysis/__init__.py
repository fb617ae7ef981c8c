"""The reduction stage of doodl: per-run Morse graphs and the connectivity taxonomy.

It reads only committed shards (see :mod:`doodl.workers.shards`) and imports nothing from
:mod:`orchestrator`. The Morse-graph (issue #3) and taxonomy (issue #4) modules land here.
"""
