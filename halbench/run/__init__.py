"""The one orchestration: a run is a plan of tasks, run by one executor into one store.

options.py     RunOptions: how to run (output, resume, Ray address and resources)
plan.py        the plan: grid, tuning, final trials and profile points as kinds of task
protocol.py    the tuning protocol: a planner that emits tuning tasks, then final tasks
groups.py      its groups (loss x grid point x replicate), seeds, ids and planned configurations
executor.py    preflight, the Ray session, tasks on Ray Tune or in this process
ray_tune.py    the Ray Tune adapter: trainable, one callback for every kind, Ctrl-C handling
ray_search.py  tuning on Ray Tune: GroupedASHA and per-group Optuna searchers
ray_compat.py  the private Ray APIs halbench uses, behind public functions
cluster.py     the only place that starts or joins Ray (auth token, reachability, resources)
store.py       finished-task files: atomic writes, one trust rule, rejected/ with a reason
tables.py      one row builder per table (trials, epochs, tuning, profile)
rundir.py      the run directory: paths, suite.yaml + suite.json, env.json, fault points
runner.py      `halbench run`: plan -> executor -> store -> tables
profile.py     `halbench profile`: one task per loss, each point into the store
dryrun.py      `halbench run --dry-run`: the run's plan, priced on this machine
progress.py    terminal progress: one reporter for every kind of task
lock.py        one run per directory; storage.py: Tune's storage path and mirroring
"""
