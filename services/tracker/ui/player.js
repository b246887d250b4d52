// Plays an HLS source in a <video>: hls.js where the browser has Media Source Extensions,
// natively where it plays HLS itself (Safari). window.reel keeps what the player did -
// fragments loaded and played, errors - so a test, or an operator with the console open,
// can see it. Used by the watch page and the status page.
"use strict";

window.reel = Object.assign(window.reel || {}, { loaded: [], played: [], errors: [], hls: null });

function reelPlay(video, src) {
  const reel = window.reel;
  const frag = (f) => ({ type: f.type, level: f.level, sn: f.sn, start: f.start, duration: f.duration });
  if (window.Hls && Hls.isSupported()) {
    const hls = (reel.hls = new Hls());
    hls.on(Hls.Events.FRAG_LOADED, (_, d) => reel.loaded.push(frag(d.frag)));
    hls.on(Hls.Events.FRAG_CHANGED, (_, d) => reel.played.push(frag(d.frag)));
    hls.on(Hls.Events.ERROR, (_, d) => reel.errors.push({ fatal: d.fatal, type: d.type, details: d.details }));
    hls.loadSource(src);
    hls.attachMedia(video);
    return true;
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    return true;
  }
  return false;
}
