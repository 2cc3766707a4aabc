// The independent decoder of the MQTT tests: subscribes to every Sparkplug B topic on a broker and
// prints one JSON line per message, decoded by Eclipse Tahu's sparkplug-payload (no socgw code).
// Usage: node decode.js mqtt://127.0.0.1:PORT [TOPIC_FILTER]
"use strict";
const mqtt = require("mqtt");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const plain = (value) => {
    if (value === null || value === undefined) return null;
    if (typeof value === "object" && typeof value.toNumber === "function") return value.toNumber();
    if (Buffer.isBuffer(value)) return value.toString("hex");
    if (Array.isArray(value)) return value.map(plain);
    if (typeof value === "object") {
        const out = {};
        for (const [key, inner] of Object.entries(value)) out[key] = plain(inner);
        return out;
    }
    return value;
};

const client = mqtt.connect(process.argv[2], { clientId: "tahu-decoder-" + process.pid, reconnectPeriod: 200 });
client.on("connect", () => {
    client.subscribe(process.argv[3] || "spBv1.0/#", { qos: 1 }, () => {
        process.stdout.write(JSON.stringify({ subscribed: true }) + "\n");
    });
});
client.on("message", (topic, message) => {
    let line;
    if (topic.startsWith("spBv1.0/STATE/")) {
        line = { topic, state: message.toString() };
    } else {
        try {
            line = { topic, payload: plain(sparkplug.decodePayload(message)) };
        } catch (error) {
            line = { topic, error: String(error) };
        }
    }
    process.stdout.write(JSON.stringify(line) + "\n");
});
client.on("error", (error) => process.stderr.write(String(error) + "\n"));
