// Socket.IO rooms on the same fan-out as the gateway, the reference of benches/fanout.rs.
// Clients connect over WebSocket with ?org=<room>; each joins its room. Commands arrive on stdin,
// one JSON object per line; the server stamps each message with the time it emits it (ts_ms, and
// sent_us in its text, as the Rust side stamps the gateway's):
//   {"cmd":"steady","rooms":["org-0",…],"per_room_per_s":2,"seconds":10,"template":{…}}
//   {"cmd":"burst","rooms":[…],"count":50,"template":{…}}
// and answers "done" on stdout when it has emitted everything.
import { Server } from "socket.io";
import { createInterface } from "node:readline";

const io = new Server(Number(process.env.PORT), {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
  pingInterval: 20000,
});
io.on("connection", (socket) => socket.join(String(socket.handshake.query.org)));

// As the Rust side does: the publish time in µs, written into the message's text.
const text = (template) => template.text.replace(/^\[sent_us=\d+\]/, "");
function emit(rooms, template) {
  for (const room of rooms) {
    const us = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const stamped = `[sent_us=${us}]${text(template)}`;
    io.to(room).emit("event", { ...template, ts_ms: Date.now(), text: stamped, stable_text: stamped });
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "burst") {
    for (let i = 0; i < command.count; i++) emit(command.rooms, command.template);
    console.log("done");
  } else if (command.cmd === "steady") {
    // Every 10 ms, the next rooms in turn, so each gets per_room_per_s messages a second.
    const per_ms = (command.per_room_per_s * command.rooms.length) / 1000;
    const start = Date.now();
    const end = start + command.seconds * 1000;
    let sent = 0;
    const timer = setInterval(() => {
      const due = Math.floor((Math.min(Date.now(), end) - start) * per_ms);
      const rooms = [];
      for (; sent < due; sent++) rooms.push(command.rooms[sent % command.rooms.length]);
      emit(rooms, command.template);
      if (Date.now() >= end) {
        clearInterval(timer);
        console.log("done");
      }
    }, 10);
  }
});
console.log("listening");
