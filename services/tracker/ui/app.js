// reel's status page: the tracker's own API, signed in with a tenant's token (kept in this
// tab's sessionStorage only). Progress is live through each video's signed event stream
// (EventSource sends no headers); the player and downloads use the links the status gives.
// Everything from the API is written as text, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const FINISHED = ["completed", "failed"];
const streams = new Map(); // video id -> its EventSource, while it runs
const reel = Object.assign(window.reel, { updates: 0 }); // player.js made it; status events counted too
let listTimer = null;

const token = () => sessionStorage.getItem("reel-token");

class SignedOut extends Error {}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (resp.status === 401) throw new SignedOut((await resp.json()).error);
  return { status: resp.status, body: await resp.json() };
}

function show(section) {
  for (const id of ["signin", "list", "video", "notfound"]) $(id).hidden = id !== section;
  $("signout").hidden = section === "signin";
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (cls) td.className = cls;
  return td;
}

function bar(td, percent) {
  const outer = document.createElement("span");
  outer.className = "bar";
  const inner = document.createElement("span");
  inner.style.width = `${percent}%`;
  outer.append(inner);
  const label = document.createElement("span");
  label.textContent = ` ${percent.toFixed(1)}%`;
  td.replaceChildren(outer, label);
}

function signOut(message) {
  sessionStorage.removeItem("reel-token");
  for (const s of streams.values()) s.close();
  streams.clear();
  clearInterval(listTimer);
  for (const id of ["videos", "segments", "rungs", "downloads"]) $(id).replaceChildren(); // nothing of the last tenant stays
  $("signin-error").textContent = message || "";
  $("who").textContent = "";
  show("signin");
}

// Follow a running video's status stream, calling update(status) on each change.
async function follow(id, update) {
  if (streams.has(id)) return;
  const { status, body } = await api(`/videos/${id}`);
  if (status !== 200) return;
  update(body);
  if (FINISHED.includes(body.state)) return;
  const source = new EventSource(body.events);
  streams.set(id, source);
  source.addEventListener("status", (e) => {
    const view = JSON.parse(e.data);
    reel.updates += 1;
    update(view);
    if (FINISHED.includes(view.state)) {
      source.close();
      streams.delete(id);
    }
  });
}

function paintRow(row, v) {
  row.dataset.state = v.state;
  row.cells[1].textContent = v.state;
  row.cells[1].className = `state ${v.state}`;
  bar(row.cells[2], v.percent);
}

async function showList() {
  show("list");
  const { body } = await api("/videos?limit=50");
  const tbody = $("videos");
  $("empty").hidden = body.videos.length > 0;
  for (const v of body.videos) {
    let row = document.getElementById(`row-${v.video_id}`);
    if (!row) {
      row = tbody.insertRow(0);
      row.id = `row-${v.video_id}`;
      const link = document.createElement("a");
      link.href = `#/videos/${v.video_id}`;
      link.textContent = v.video_id;
      cell(row, "").append(link);
      cell(row, v.state);
      cell(row, "");
      cell(row, v.profile);
      cell(row, new Date(v.updated_at).toLocaleString());
    }
    paintRow(row, v);
    if (!FINISHED.includes(v.state)) follow(v.video_id, (view) => paintRow(row, view));
  }
}

function paintVideo(v) {
  $("video-id").textContent = v.video_id;
  $("video-state").textContent = v.state;
  $("video-state").className = `state ${v.state}`;
  $("video-bar").style.width = `${v.percent}%`;
  $("video-percent").textContent = `${v.percent.toFixed(1)}%`;
  $("video-error").textContent = v.error ? `${v.error.kind} in ${v.error.stage}: ${v.error.reason}` : "";
  const tbody = $("segments");
  tbody.replaceChildren();
  for (const s of v.segments) {
    const row = tbody.insertRow();
    cell(row, s.track);
    cell(row, s.index ?? "audio");
    cell(row, s.state);
    cell(row, s.attempt);
    cell(row, s.handbacks);
    cell(row, s.worker);
    bar(cell(row, ""), s.stage === "uploaded" ? 100 : s.percent); // else: its current stage's work
    cell(row, s.error, "error");
  }
  if (v.state === "completed" && v.playback && $("playback").hidden) play(v);
}

function play(v) {
  $("playback").hidden = false;
  const rungs = $("rungs");
  rungs.replaceChildren();
  const downloads = $("downloads");
  downloads.replaceChildren();
  for (const o of v.outputs) {
    if (o.kind === "mp4") {
      const li = document.createElement("li");
      li.textContent = o.rung;
      rungs.append(li);
    }
    if (["mp4", "poster", "manifest"].includes(o.kind)) {
      const row = downloads.insertRow();
      const link = document.createElement("a");
      link.href = o.url;
      link.textContent = o.object.key.split("/").pop();
      link.setAttribute("download", "");
      cell(row, "").append(link);
      cell(row, `${(o.object.size / 1024).toFixed(0)} KiB`);
      cell(row, "").append(Object.assign(document.createElement("code"), { textContent: o.object.sha256 }));
    }
  }
  reelPlay($("player"), v.playback.hls);
}

async function showVideo(id) {
  for (const s of streams.values()) s.close();
  streams.clear();
  $("playback").hidden = true;
  const { status, body } = await api(`/videos/${id}`);
  if (status !== 200) {
    $("notfound-text").textContent = body.error || `no video ${id}`;
    show("notfound");
    return;
  }
  show("video");
  await follow(id, paintVideo);
}

async function route() {
  clearInterval(listTimer);
  if (!token()) return signOut();
  try {
    const { body } = await api("/whoami");
    $("who").textContent = `tenant ${body.tenant}`;
    const match = location.hash.match(/^#\/videos\/([^/]+)$/);
    if (match) {
      await showVideo(decodeURIComponent(match[1]));
    } else {
      await showList();
      listTimer = setInterval(() => showList().catch(failed), 3000); // new videos, without a reload
    }
  } catch (err) {
    failed(err);
  }
}

function failed(err) {
  if (err instanceof SignedOut) signOut(`Signed out: ${err.message}`);
  else console.error(err);
}

$("signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("reel-token", $("token").value.trim());
  $("token").value = "";
  route();
});
$("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
