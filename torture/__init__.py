"""The torture suite: filetwin under SIGKILL, injected syscall faults, a full disk,
damaged journals, symlink races and hostile clients (``python -m torture``).

Each campaign drives a real daemon on a temporary state directory and checks
the house rules after every perturbation; see torture/README.md.
"""
