// Node socket.io: io.to(room).emit, with the server's defaults.
//
// A peer of `make bench` (bench/run.py): subscribers emit join(room) (acknowledged
// once in the room); the publisher emits pub(data), which the server emits as "msg"
// to the room "bench". Prints "ready port=P".
//
//     node bench/peers/peer_socketio.js [PORT]
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const ROOM = "bench";
const server = http.createServer();
const io = new Server(server, { serveClient: false });

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack(true);
  });
  socket.on("pub", (data) => io.to(ROOM).emit("msg", data));
});
server.listen(Number(process.argv[2] || 0), "127.0.0.1", 4096, () => {
  console.log(`ready port=${server.address().port}`);
});
