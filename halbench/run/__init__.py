"""The execution spine: `halbench run` and `halbench profile` as two kinds of task on it.

options.py   RunOptions: how to run (output, resume, Ray address and resources)
cluster.py   the only place that starts or joins Ray (auth token, reachability, resources)
rundir.py    the run directory: suite.yaml + suite.json, env.json, trial files, collect
tune.py      the Tune trainable, its callbacks and Ctrl-C handling
progress.py  terminal progress lines
runner.py    grid runs: one Tune trial per grid point
profile.py   loss-call sweeps: one Ray task per loss
"""
