"""The soak: many containers through the installed `runtime`, with random SIGKILLs, then `runtime gc`
and a count of everything left behind (run it with `python3 -m benchmarks.soak`; see __main__.py).

plan: the seeded mix of runs and what each must give; runner: the runs, a few at a time, and the
kills; procfs: what /proc says of processes; leaks: the snapshots and the leak counts; sweep: gc
after the runs and the removal of what leaked; prepare: the rootfs, the image and the runtime's
command; report: the printed summary and the exit code.
"""
