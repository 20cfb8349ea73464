"""Review: the queue of decisions operators should look at, and the terminal and web front ends that mark them."""
