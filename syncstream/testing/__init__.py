"""Test support for programs built on syncstream: real peers started on loopback.

- :mod:`syncstream.testing.sshd`: a throwaway OpenSSH server (and ssh-agent) with keys
  in a temp dir, to test remote senders without touching the machine's ssh config.
"""
