"""Seccomp filters for containers: Docker's default profile, Docker's JSON format, BPF, install.

    from runtime.seccomp import bpf, install, profile

    chosen = profile.default()                  # or profile.load(path) for seccomp=PROFILE.json
    program = bpf.build(chosen, capabilities)   # bounding-set capability numbers; bytes
    ...                                          # no_new_privs set; last step before exec:
    install.install(program, chosen.flags)

profile.ProfileError (a runtime Failure: message and hint) reports a profile that cannot be
honoured. This package's __init__ imports nothing: each submodule is imported where it is needed.
"""
