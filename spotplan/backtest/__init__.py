"""Backtesting: replay real spot availability traces through deadline-aware policies and the
omniscient optimum (the model of "Can't Be Late", NSDI'24), and check analyze's cost model against them.

Modules: `traces` (loaders to one per-tick form), `simulator` (the job model, on an integer grid),
`policies` (on-demand, greedy, uniform-progress, spotplan), `optimal` (exact dynamic programme),
`replay` (random starts over traces, aggregation), `result` (the `spotplan.backtest/1` document and
its renderings), `calibrate` (analyze's predictions against replay).
"""
