"""`edge-agent evaluate`: the agent against the plant's operators on identical weather, over
weeks of plant time, with the saving counted only at equal conformity (plant-model 4.5).

Modules: operator (the baseline), scenario (products, windows, events), runs (A and B),
figures (per product, the equal-conformity rule), report, charts, main (the command).
"""
