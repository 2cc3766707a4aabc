"""MQTT northbound: the fleet as a Sparkplug B 3.0 edge node (aiomqtt over paho-mqtt, TLS by Python's ssl).

sparkplug_b.proto  the payload schema of the Sparkplug 3.0 specification; sparkplug_b_pb2 is protoc's
                   module from it (committed; `make sparkplug` regenerates it, a test compares)
"""
