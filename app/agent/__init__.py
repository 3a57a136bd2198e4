"""The sandchat agent: a per-user process that keeps plugin processes warm between commands.

Built in pieces (issue 18). So far: ``paths`` (where the socket lives, and the checks that
only the user can reach it), ``wire`` (the length-prefixed, bounded JSON frames and the
hello both sides exchange first), ``peer`` (the SO_PEERCRED uid check on each accept),
``decision`` (the digest of a launch decision that decides reuse) and ``errors`` (the
package's one exception root).
"""
