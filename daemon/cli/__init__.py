"""The command-line apps, the top of the house: ``musc-online`` and ``musc-daemon``. Nothing imports them."""
