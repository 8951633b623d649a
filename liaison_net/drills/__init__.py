"""What the drills (demo/, bench/, chaos/) and the integration tests share.

The node never imports this package, nor the drills themselves: it is code that runs nodes
from the outside, as an operator would.
"""
