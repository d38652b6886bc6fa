// meshconf's mesh viewer: a glTF binary (.glb) with per-vertex colours, embedded in the page as base64, drawn with
// plain WebGL 1 (no library, no network: the page works from file://). Drag to rotate, wheel to zoom,
// double-click to reset. Written for meshconf (MIT licence, like the package).
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
  function normals(p, idx) {
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
  function view(canvas) {
    var mesh = parseGlb(bytesOf(document.getElementById(canvas.dataset.mesh).textContent.trim()));
    var gl = canvas.getContext("webgl", {preserveDrawingBuffer: true}) ||
             canvas.getContext("experimental-webgl", {preserveDrawingBuffer: true});
    if (!gl) { canvas.outerHTML = "<p class='note'>WebGL is not available in this browser: open mesh.glb in a 3D " +
                                  "viewer instead.</p>"; return; }
    var program = gl.createProgram();
    gl.attachShader(program, shader(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(program, shader(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(program);
    gl.useProgram(program);
    var p = mesh.positions, lo = [1e9, 1e9, 1e9], hi = [-1e9, -1e9, -1e9];
    for (var i = 0; i < p.length; i += 3) for (var a = 0; a < 3; a++) {
      lo[a] = Math.min(lo[a], p[i + a]); hi[a] = Math.max(hi[a], p[i + a]);
    }
    var centre = [0, 1, 2].map(function (a) { return (lo[a] + hi[a]) / 2; });
    var radius = Math.max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2 || 1;
    var centred = new Float32Array(p.length);
    for (i = 0; i < p.length; i++) centred[i] = p[i] - centre[i % 3];
    var indices = mesh.indices.length && p.length / 3 < 65536 ? new Uint16Array(mesh.indices) : mesh.indices;
    function attribute(name, data, size, type, normalised) {
      var buffer = gl.createBuffer(), loc = gl.getAttribLocation(program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, size, type, normalised, 0, 0);
    }
    attribute("p", centred, 3, gl.FLOAT, false);
    attribute("n", normals(centred, mesh.indices), 3, gl.FLOAT, false);
    attribute("c", mesh.colours, 4, gl.UNSIGNED_BYTE, true);
    var ib = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ib);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices, gl.STATIC_DRAW);
    var indexType = indices instanceof Uint16Array ? gl.UNSIGNED_SHORT : (gl.getExtension("OES_element_index_uint"),
                                                                          gl.UNSIGNED_INT);
    var state = {yaw: 0, pitch: 0, distance: 3.8};
    function draw() {
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.clearColor(0.96, 0.96, 0.97, 1);
      gl.enable(gl.DEPTH_TEST);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      var rot = rotation(state.yaw, state.pitch);
      var scale = 1 / radius;
      var model = multiply(rot, new Float32Array([scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, scale, 0, 0, 0, 0, 1]));
      var viewM = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, -state.distance, 1]);
      var mvp = multiply(perspective(0.7, canvas.width / canvas.height, 0.1, 100), multiply(viewM, model));
      gl.uniformMatrix4fv(gl.getUniformLocation(program, "mvp"), false, mvp);
      gl.uniformMatrix4fv(gl.getUniformLocation(program, "rot"), false, rot);
      gl.drawElements(gl.TRIANGLES, indices.length, indexType, 0);
      canvas.dataset.drawn = "1";
    }
    var drag = null;
    canvas.addEventListener("mousedown", function (e) { drag = [e.clientX, e.clientY]; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (e) {
      if (!drag) return;
      state.yaw += (e.clientX - drag[0]) * 0.01;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + (e.clientY - drag[1]) * 0.01));
      drag = [e.clientX, e.clientY];
      draw();
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      state.distance = Math.max(1.2, Math.min(12, state.distance * (e.deltaY > 0 ? 1.1 : 0.9)));
      draw();
    }, {passive: false});
    canvas.addEventListener("dblclick", function () { state = {yaw: 0, pitch: 0, distance: 3.8}; draw(); });
    draw();
  }
  document.querySelectorAll("canvas.mesh").forEach(function (canvas) {
    try { view(canvas); } catch (err) { canvas.insertAdjacentHTML("afterend", "<p class='note'>3D view failed: " +
                                                                 String(err) + "</p>"); }
  });
})();
