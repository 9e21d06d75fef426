// Node `ws`: the broadcast of the library's README, to every subscriber.
//
// A peer of `make bench` (bench/run.py): subscribers connect to /sub, the publisher
// to /pub; every message of the publisher goes to every open subscriber with
// client.send(data). Prints "ready port=P".
//
//     node bench/peers/peer_ws.js [PORT]
"use strict";
const { WebSocketServer, WebSocket } = require("ws");

const subscribers = new Set(); // in join order
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2] || 0), backlog: 4096 });

wss.on("connection", (ws, req) => {
  if (req.url === "/pub") {
    ws.on("message", (data, isBinary) => {
      for (const client of subscribers) {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      }
    });
    return;
  }
  subscribers.add(ws);
  ws.on("close", () => subscribers.delete(ws));
});
wss.on("listening", () => console.log(`ready port=${wss.address().port}`));
