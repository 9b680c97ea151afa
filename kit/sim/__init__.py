"""The virtual board: an ECCX08 chip, its serial port and the sketches it runs."""
