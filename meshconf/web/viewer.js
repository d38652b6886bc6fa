// meshconf's mesh viewer: a glTF binary (.glb) with per-vertex colours and normals, embedded in the page as base64,
// drawn with plain WebGL 1 (no library, no network: the page works from file://). Every view shares one WebGL
// context (browsers keep about 16; a page of many people would lose the first ones) and copies its frame into its
// own 2D canvas. Drag (mouse, touch or pen) to rotate; with the view focused (click or Tab), arrow keys rotate,
// + and - or the wheel zoom, 0 resets; double-click resets. Written for meshconf (MIT licence, like the package).
(function () {
  "use strict";
  function bytesOf(b64) {
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function parseGlb(bytes) {
    var dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) !== 0x46546c67) throw new Error("not a glTF binary");
    var jsonLength = dv.getUint32(12, true);
    var json = JSON.parse(new TextDecoder().decode(bytes.subarray(20, 20 + jsonLength)));
    var binStart = 20 + jsonLength + 8;
    var buffer = bytes.buffer, base = bytes.byteOffset + binStart;
    function accessor(index, Type, width) {
      var a = json.accessors[index], view = json.bufferViews[a.bufferView];
      return new Type(buffer.slice(base + (view.byteOffset || 0), base + (view.byteOffset || 0) + a.count * width *
                                   Type.BYTES_PER_ELEMENT));
    }
    var prim = json.meshes[0].primitives[0];
    return {positions: accessor(prim.attributes.POSITION, Float32Array, 3),
            colours: json.accessors[prim.attributes.COLOR_0].componentType === 5123
                     ? displayColours(accessor(prim.attributes.COLOR_0, Uint16Array, 4))
                     : accessor(prim.attributes.COLOR_0, Uint8Array, 4),
            normals: prim.attributes.NORMAL !== undefined ? accessor(prim.attributes.NORMAL, Float32Array, 3) : null,
            indices: accessor(prim.indices, Uint32Array, 1)};
  }
  // glTF vertex colours are linear; this page draws into a plain (sRGB) canvas, so they are encoded back to sRGB
  // bytes once (files holding sRGB bytes are drawn as they are).
  function displayColours(linear16) {
    var out = new Uint8Array(linear16.length);
    for (var i = 0; i < linear16.length; i++) {
      var c = linear16[i] / 65535;
      if (i % 4 !== 3) c = c <= 0.0031308 ? 12.92 * c : 1.055 * Math.pow(c, 1 / 2.4) - 0.055;
      out[i] = Math.max(0, Math.min(255, Math.round(c * 255)));
    }
    return out;
  }
  function multiply(a, b) {  // column-major 4x4
    var o = new Float32Array(16);
    for (var i = 0; i < 4; i++) for (var j = 0; j < 4; j++) {
      var s = 0;
      for (var k = 0; k < 4; k++) s += a[k * 4 + j] * b[i * 4 + k];
      o[i * 4 + j] = s;
    }
    return o;
  }
  function rotation(yaw, pitch) {
    var cy = Math.cos(yaw), sy = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
    var ry = new Float32Array([cy, 0, -sy, 0, 0, 1, 0, 0, sy, 0, cy, 0, 0, 0, 0, 1]);
    var rx = new Float32Array([1, 0, 0, 0, 0, cp, sp, 0, 0, -sp, cp, 0, 0, 0, 0, 1]);
    return multiply(rx, ry);
  }
  function perspective(fovy, aspect, near, far) {
    var f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
    return new Float32Array([f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0]);
  }
  function shader(gl, type, source) {
    var s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
    return s;
  }
  var VS = "attribute vec3 p; attribute vec3 n; attribute vec4 c; uniform mat4 mvp; uniform mat4 rot;" +
           "varying vec4 vc; varying vec3 vn; void main() { gl_Position = mvp * vec4(p, 1.0);" +
           "vn = (rot * vec4(n, 0.0)).xyz; vc = c; }";
  var FS = "precision mediump float; varying vec4 vc; varying vec3 vn; void main() {" +
           "float l = 0.35 + 0.65 * abs(normalize(vn).z); gl_FragColor = vec4(vc.rgb * l, 1.0); }";
  var shared = null;  // {gl, canvas, program}: the one WebGL context every view draws with
  function context() {
    if (shared) return shared;
    var canvas = document.createElement("canvas");
    var gl = canvas.getContext("webgl", {preserveDrawingBuffer: true}) ||
             canvas.getContext("experimental-webgl", {preserveDrawingBuffer: true});
    if (!gl) return null;
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(program, shader(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(program);
    gl.useProgram(program);
    gl.getExtension("OES_element_index_uint");
    canvas.addEventListener("webglcontextlost", function (e) {
      e.preventDefault();
      document.querySelectorAll("canvas.mesh").forEach(function (c) {
        c.setAttribute("aria-label", "3D view unavailable: the browser dropped its WebGL context; reload the page");
      });
    });
    shared = {gl: gl, canvas: canvas, program: program};
    return shared;
  }
  function buffers(ctx, mesh) {
    var gl = ctx.gl, p = mesh.positions, lo = [1e9, 1e9, 1e9], hi = [-1e9, -1e9, -1e9];
    for (var i = 0; i < p.length; i += 3) for (var a = 0; a < 3; a++) {
      lo[a] = Math.min(lo[a], p[i + a]); hi[a] = Math.max(hi[a], p[i + a]);
    }
    var centre = [0, 1, 2].map(function (a) { return (lo[a] + hi[a]) / 2; });
    var centred = new Float32Array(p.length), small = p.length / 3 < 65536;  // 16-bit indices: WebGL 1's own
    for (i = 0; i < p.length; i++) centred[i] = p[i] - centre[i % 3];
    function upload(target, data) {
      var b = gl.createBuffer();
      gl.bindBuffer(target, b);
      gl.bufferData(target, data, gl.STATIC_DRAW);
      return b;
    }
    return {p: upload(gl.ARRAY_BUFFER, centred), n: upload(gl.ARRAY_BUFFER, mesh.normals || normals(centred, mesh.indices)),
            c: upload(gl.ARRAY_BUFFER, mesh.colours), i: upload(gl.ELEMENT_ARRAY_BUFFER, small ?
                                                                   new Uint16Array(mesh.indices) : mesh.indices),
            type: small ? gl.UNSIGNED_SHORT : gl.UNSIGNED_INT, count: mesh.indices.length, radius: Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2 || 1};
  }
  function normals(p, idx) {  // files without NORMAL: area-weighted from the faces
    var n = new Float32Array(p.length);
    for (var f = 0; f < idx.length; f += 3) {
      var a = idx[f] * 3, b = idx[f + 1] * 3, c = idx[f + 2] * 3;
      var ux = p[b] - p[a], uy = p[b + 1] - p[a + 1], uz = p[b + 2] - p[a + 2];
      var vx = p[c] - p[a], vy = p[c + 1] - p[a + 1], vz = p[c + 2] - p[a + 2];
      var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
      [a, b, c].forEach(function (k) { n[k] += nx; n[k + 1] += ny; n[k + 2] += nz; });
    }
    return n;
  }
  var HOME = {yaw: 0, pitch: 0, distance: 3.8};
  function view(canvas) {
    var ctx = context();
    if (!ctx) { canvas.outerHTML = "<p class='note'>WebGL is not available in this browser: open mesh.glb in a 3D " +
                                   "viewer instead.</p>"; return; }
    var gl = ctx.gl, mesh = buffers(ctx, parseGlb(bytesOf(document.getElementById(canvas.dataset.mesh).textContent.trim())));
    var out = canvas.getContext("2d");
    var state = {yaw: HOME.yaw, pitch: HOME.pitch, distance: HOME.distance};
    function attribute(name, buffer, size, type, normalised) {
      var loc = gl.getAttribLocation(ctx.program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, type, normalised, 0, 0);
    }
    function fit() {  // the buffer at the size shown times the screen's pixel ratio: rasterising a 720 px buffer
      // shown at 360 px costs software WebGL 3x the time for nothing. True when the size changed.
      var shown = canvas.clientWidth, dpr = window.devicePixelRatio || 1;
      var size = shown ? Math.max(64, Math.min(1440, Math.round(shown * dpr))) : canvas.width;
      if (canvas.width === size && canvas.height === size) return false;
      canvas.width = size; canvas.height = size;
      return true;
    }
    function draw() {
      if (gl.isContextLost()) return;
      fit();
      ctx.canvas.width = canvas.width; ctx.canvas.height = canvas.height;
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(0.96, 0.96, 0.97, 1);
      gl.enable(gl.DEPTH_TEST);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      attribute("p", mesh.p, 3, gl.FLOAT, false);
      attribute("n", mesh.n, 3, gl.FLOAT, false);
      attribute("c", mesh.c, 4, gl.UNSIGNED_BYTE, true);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, mesh.i);
      var rot = rotation(state.yaw, state.pitch), scale = 1 / mesh.radius;
      var model = multiply(rot, new Float32Array([scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, 1]));
      var viewM = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, -state.distance, 1]);
      var mvp = multiply(perspective(0.7, canvas.width / canvas.height, 0.1, 100), multiply(viewM, model));
      gl.uniformMatrix4fv(gl.getUniformLocation(ctx.program, "mvp"), false, mvp);
      gl.uniformMatrix4fv(gl.getUniformLocation(ctx.program, "rot"), false, rot);
      gl.drawElements(gl.TRIANGLES, mesh.count, mesh.type, 0);
      out.clearRect(0, 0, canvas.width, canvas.height);
      out.drawImage(ctx.canvas, 0, 0);
      canvas.dataset.drawn = "1";
      canvas.dataset.yaw = state.yaw.toFixed(3);
    }
    function turn(dyaw, dpitch) {
      state.yaw += dyaw;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + dpitch));
      draw();
    }
    function zoom(factor) { state.distance = Math.max(1.2, Math.min(12, state.distance * factor)); draw(); }
    function reset() { state = {yaw: HOME.yaw, pitch: HOME.pitch, distance: HOME.distance}; draw(); }
    var drag = null;  // pointer events: mouse, touch and pen alike
    canvas.addEventListener("pointerdown", function (e) {
      drag = [e.clientX, e.clientY];
      try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer: nothing to capture */ }
      canvas.focus({preventScroll: true});
    });
    canvas.addEventListener("pointermove", function (e) {
      if (!drag) return;
      turn((e.clientX - drag[0]) * 0.01, (e.clientY - drag[1]) * 0.01);
      drag = [e.clientX, e.clientY];
    });
    ["pointerup", "pointercancel"].forEach(function (t) { canvas.addEventListener(t, function () { drag = null; }); });
    canvas.addEventListener("wheel", function (e) {  // only a focused view takes the wheel: the page still scrolls
      if (document.activeElement !== canvas) return;
      e.preventDefault();
      zoom(e.deltaY > 0 ? 1.1 : 0.9);
    }, {passive: false});
    canvas.addEventListener("keydown", function (e) {
      var keys = {ArrowLeft: [-0.15, 0], ArrowRight: [0.15, 0], ArrowUp: [0, -0.15], ArrowDown: [0, 0.15]};
      if (keys[e.key]) turn(keys[e.key][0], keys[e.key][1]);
      else if (e.key === "+" || e.key === "=") zoom(0.9);
      else if (e.key === "-") zoom(1.1);
      else if (e.key === "0" || e.key === "Home") reset();
      else return;
      e.preventDefault();
    });
    canvas.addEventListener("dblclick", reset);
    window.addEventListener("resize", function () { if (fit()) draw(); });
    draw();
  }
  document.querySelectorAll("canvas.mesh").forEach(function (canvas) {
    try { view(canvas); } catch (err) { canvas.insertAdjacentHTML("afterend", "<p class='note'>3D view failed: " +
                                                                 String(err) + "</p>"); }
  });
})();
