"""Scale-out: worker controllers balance their own packs, a head balances the workers' clusters.

clusters.py   a worker's summary as one big pack, exact for the energy-proportional split (pure)
settings.py   a head's `hierarchy` section of the site config, checked
tracker.py    what the head knows of each worker from Sparkplug births, data and deaths (pure)
host.py       the head's Sparkplug B host application: STATE on every broker, on its own thread
head.py       `ClusterFieldbus`: the clusters as the engine's nodes, their shares out as NCMD

A worker is today's engine with a `northbound.mqtt` section (its edge node publishes the summary); see
docs/hierarchy.md.
"""
