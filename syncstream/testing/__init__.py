"""Test support for programs built on syncstream: real peers started on loopback.

- :mod:`syncstream.testing.plugin`: the pytest plugin (enabled by the ``pytest11`` entry
  point): fixtures ``ts_recorder``, ``ts_replay``, ``udp_relay`` and ``stamp_sender``;
- :mod:`syncstream.testing.replay`: record a test pattern stamped like a live sender, and
  replay a ``.ts`` file to ``udp://host:port`` as a live camera;
- :mod:`syncstream.testing.relay`: a UDP relay that delays, jitters and drops datagrams;
- :mod:`syncstream.testing.flood`: a flood of MPEG-TS lookalike datagrams on random PIDs;
- :mod:`syncstream.testing.slowloris`: HTTP connections that drip a request head that never
  ends, against the web view;
- :mod:`syncstream.testing.sshd`: a throwaway OpenSSH server (and ssh-agent) with keys
  in a temp dir, to test remote senders without touching the machine's ssh config.
"""
