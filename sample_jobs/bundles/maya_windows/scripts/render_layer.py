import sys

# Renders one frame of one layer: mayapy render_layer.py SCENE FRAME
print(sys.argv[1:])
