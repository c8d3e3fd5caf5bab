//! A bounded reader for PyTorch's zip checkpoints (`torch.save` since 1.6): the pickle
//! `…/data.pkl` that describes the state dict, and the raw storages `…/data/<key>` it points
//! at. Nothing is executed: the pickle is read by a small stack machine that knows only the
//! opcodes `torch.save` writes and builds plain values (a `GLOBAL` is just a name).
//!
//! It replaces candle's `pickle` module for files we did not write, where that module panics
//! or over-allocates on hostile input (a short REDUCE tuple, a memo reference cloned deeply
//! each time it is read, a declared shape allocated before it is compared with the stored
//! bytes). Here:
//!
//! - every read is checked against the bytes left, every opcode's operands against the stack;
//! - memo references share the value (`Rc`), and extending a shared list or dict copies it at
//!   most within a budget of copied elements;
//! - nesting is bounded (so dropping a value cannot overflow the stack);
//! - a tensor's element count × element size is computed with checked arithmetic and checked
//!   against the storage's declared size and the zip entry's real size before anything is
//!   allocated, and its bytes are read incrementally (the buffer grows with the data actually
//!   present);
//! - all tensors together may read at most a few times the file's size (views of one storage).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};

/// Deepest nesting of pickled values.
const MAX_DEPTH: u32 = 256;
/// Elements copied, in all, when a list or dict that is shared (memoised) is extended.
const COPY_BUDGET: usize = 1 << 24;
/// Largest `data.pkl` read.
const MAX_PICKLE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
enum Kind {
    Mark,
    None,
    /// Booleans, floats and byte strings say nothing a state dict needs: kept as markers.
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Class {
        module: String,
        name: String,
    },
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Set(Vec<V>),
    Reduce {
        callable: V,
        args: V,
    },
    Build {
        obj: V,
        state: V,
    },
    PersId(V),
}

#[derive(Debug, Clone)]
struct Node {
    depth: u32,
    kind: Kind,
}

type V = Rc<Node>;

fn leaf(kind: Kind) -> V {
    Rc::new(Node { depth: 1, kind })
}

/// A node holding `children`; errors when nesting is too deep.
fn node<'a>(kind: Kind, children: impl IntoIterator<Item = &'a V>) -> Result<V, String> {
    let depth = children.into_iter().map(|c| c.depth).max().unwrap_or(0) + 1;
    if depth > MAX_DEPTH {
        return Err(format!("pickle nests values more than {MAX_DEPTH} deep"));
    }
    Ok(Rc::new(Node { depth, kind }))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    copied: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("pickle cut short at byte {} (an operand needs {n} bytes)", self.pos)),
        }
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("pickle: a name without its newline")?;
        let s = String::from_utf8_lossy(&rest[..n]).trim_end_matches('\r').to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<V, String> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "pickle: a string that is not UTF-8".to_string())?;
        Ok(leaf(Kind::Str(s.to_string())))
    }

    fn pop(&mut self) -> Result<V, String> {
        self.stack.pop().ok_or_else(|| "pickle: an opcode needs a value but the stack is empty".to_string())
    }

    fn pop_to_mark(&mut self) -> Result<Vec<V>, String> {
        let i = self.stack.iter().rposition(|v| matches!(v.kind, Kind::Mark)).ok_or("pickle: no MARK on the stack")?;
        let items = self.stack.split_off(i + 1);
        self.stack.pop();
        Ok(items)
    }

    /// The top of the stack, made unique for mutation (a shared value is copied, within the
    /// copy budget).
    fn top_mut(&mut self) -> Result<&mut Node, String> {
        let top = self.stack.last_mut().ok_or("pickle: an opcode needs a container but the stack is empty")?;
        if Rc::strong_count(top) > 1 || Rc::weak_count(top) > 0 {
            let n = match &top.kind {
                Kind::List(v) | Kind::Tuple(v) | Kind::Set(v) => v.len(),
                Kind::Dict(v) => v.len(),
                _ => 1,
            };
            self.copied = self.copied.saturating_add(n);
            if self.copied > COPY_BUDGET {
                return Err(format!("pickle copies more than {COPY_BUDGET} shared elements; not a checkpoint"));
            }
        }
        Ok(Rc::make_mut(top))
    }

    fn extend(&mut self, items: Vec<V>) -> Result<(), String> {
        let deepest = items.iter().map(|v| v.depth).max().unwrap_or(0);
        let top = self.top_mut()?;
        let depth = top.depth.max(deepest + 1);
        if depth > MAX_DEPTH {
            return Err(format!("pickle nests values more than {MAX_DEPTH} deep"));
        }
        top.depth = depth;
        match &mut top.kind {
            Kind::List(v) | Kind::Set(v) => v.extend(items),
            Kind::Dict(d) => {
                if !items.len().is_multiple_of(2) {
                    return Err("pickle: SETITEMS with an odd number of values".into());
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            _ => return Err("pickle: APPEND/SETITEM on a value that is not a list, set or dict".into()),
        }
        Ok(())
    }

    /// Run to STOP; the value left on the stack.
    fn run(mut self) -> Result<V, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME (length only)
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(leaf(Kind::Mark)),
                b'N' => self.stack.push(leaf(Kind::None)),
                0x88 => self.stack.push(leaf(Kind::Bool)),
                0x89 => self.stack.push(leaf(Kind::Bool)),
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(leaf(Kind::Int(v)))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?) as i64;
                    self.stack.push(leaf(Kind::Int(v)))
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?) as i64;
                    self.stack.push(leaf(Kind::Int(v)))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes.
                    let n = if op == 0x8a { self.u8()? as usize } else { u32::from_le_bytes(self.le()?) as usize };
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("pickle: an integer of {n} bytes (at byte {at}) does not fit 64 bits"));
                    }
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    buf[..n].copy_from_slice(b);
                    self.stack.push(leaf(Kind::Int(i64::from_le_bytes(buf))))
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(leaf(Kind::Float))
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                b'T' | b'B' => {
                    let n = u32::from_le_bytes(self.le()?) as usize;
                    self.take(n)?;
                    self.stack.push(leaf(Kind::Bytes))
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(leaf(Kind::Bytes))
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(leaf(Kind::Class { module, name }))
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module.kind, &name.kind) {
                        (Kind::Str(m), Kind::Str(n)) => self.stack.push(leaf(Kind::Class { module: m.clone(), name: n.clone() })),
                        _ => return Err(format!("pickle: STACK_GLOBAL without two strings (at byte {at})")),
                    }
                }
                b')' => self.stack.push(leaf(Kind::Tuple(Vec::new()))),
                b']' => self.stack.push(leaf(Kind::List(Vec::new()))),
                b'}' => self.stack.push(leaf(Kind::Dict(Vec::new()))),
                0x8f => self.stack.push(leaf(Kind::Set(Vec::new()))),
                b't' | b'l' | 0x91 => {
                    let items = self.pop_to_mark()?;
                    let kind = |items| match op {
                        b't' => Kind::Tuple(items),
                        b'l' => Kind::List(items),
                        _ => Kind::Set(items),
                    };
                    let depth_of: Vec<V> = items.clone();
                    let v = node(kind(items), depth_of.iter())?;
                    self.stack.push(v)
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("pickle: TUPLE{n} with {} values on the stack", self.stack.len()));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = node(Kind::Tuple(items.clone()), items.iter())?;
                    self.stack.push(v)
                }
                b'd' => {
                    let items = self.pop_to_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return Err("pickle: DICT with an odd number of values".into());
                    }
                    let v = node(Kind::Dict(Vec::new()), items.iter())?;
                    self.stack.push(v);
                    self.extend(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend(vec![v])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_to_mark()?;
                    self.extend(items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    self.extend(items)?
                }
                b'R' | 0x81 => {
                    // REDUCE / NEWOBJ: kept as a description, never called.
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let reduced = match &callable.kind {
                        Kind::Class { module, name } if module == "collections" && (name == "OrderedDict" || name == "defaultdict") => {
                            leaf(Kind::Dict(Vec::new()))
                        }
                        _ => node(Kind::Reduce { callable: callable.clone(), args: args.clone() }, [&callable, &args])?,
                    };
                    self.stack.push(reduced)
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    if let (Kind::Dict(_), Kind::Dict(extra)) = (&obj.kind, &state.kind) {
                        // A state dict's `_metadata`: merged as candle does.
                        let items: Vec<V> = extra.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
                        self.stack.push(obj);
                        self.extend(items)?;
                    } else {
                        let v = node(Kind::Build { obj: obj.clone(), state: state.clone() }, [&obj, &state])?;
                        self.stack.push(v)
                    }
                }
                b'Q' => {
                    let id = self.pop()?;
                    let v = node(Kind::PersId(id.clone()), [&id])?;
                    self.stack.push(v)
                }
                b'q' | b'r' | 0x94 => {
                    let id = match op {
                        b'q' => self.u8()? as u32,
                        b'r' => u32::from_le_bytes(self.le()?),
                        _ => self.memo.len() as u32,
                    };
                    let top = self.stack.last().ok_or("pickle: PUT with an empty stack")?.clone();
                    self.memo.insert(id, top);
                }
                b'h' | b'j' => {
                    let id = if op == b'h' { self.u8()? as u32 } else { u32::from_le_bytes(self.le()?) };
                    let v = self.memo.get(&id).ok_or_else(|| format!("pickle: GET of memo {id}, never put"))?.clone();
                    self.stack.push(v)
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_to_mark()?;
                }
                b'2' => {
                    let v = self.stack.last().ok_or("pickle: DUP with an empty stack")?.clone();
                    self.stack.push(v)
                }
                _ => return Err(format!("pickle: opcode 0x{op:02x} at byte {at} is not one torch.save writes")),
            }
        }
    }
}

/// Run a pickle (bytes in memory) to its value.
fn unpickle(data: &[u8]) -> Result<V, String> {
    Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new(), copied: 0 }.run()
}

/// Where one tensor's data lies and how it is laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Whether the storage holds the tensor in Fortran (reversed) order.
    pub fortran: bool,
    /// Byte offset into the storage.
    pub offset: usize,
    /// Bytes the tensor occupies from there.
    pub bytes: usize,
    /// The zip entry of the storage.
    pub entry: String,
    /// Declared storage size in bytes.
    pub storage_bytes: usize,
}

fn class_of(v: &V) -> Option<(&str, &str)> {
    match &v.kind {
        Kind::Class { module, name } => Some((module, name)),
        _ => None,
    }
}

fn int(v: &V, what: &str) -> Result<i64, String> {
    match v.kind {
        Kind::Int(i) => Ok(i),
        _ => Err(format!("{what} is not an integer")),
    }
}

fn size(v: &V, what: &str) -> Result<usize, String> {
    let i = int(v, what)?;
    usize::try_from(i).map_err(|_| format!("{what} is {i}"))
}

fn sizes(v: &V, what: &str) -> Result<Vec<usize>, String> {
    match &v.kind {
        Kind::Tuple(items) => items.iter().map(|x| size(x, what)).collect(),
        _ => Err(format!("{what} is not a tuple")),
    }
}

fn tuple<'v>(v: &'v V, what: &str, min: usize) -> Result<&'v [V], String> {
    match &v.kind {
        Kind::Tuple(items) if items.len() >= min => Ok(items),
        Kind::Tuple(items) => Err(format!("{what} has {} values, needs {min}", items.len())),
        _ => Err(format!("{what} is not a tuple")),
    }
}

/// Strides of a C-order (`rev` false) or Fortran-order layout match `stride` (dimensions of
/// size 1 may carry any stride).
fn dense(shape: &[usize], stride: &[usize], fortran: bool) -> bool {
    let mut expect = 1usize;
    let order: Vec<usize> = if fortran { (0..shape.len()).collect() } else { (0..shape.len()).rev().collect() };
    for i in order {
        if shape[i] != 1 && stride[i] != expect {
            return false;
        }
        expect = expect.saturating_mul(shape[i]);
    }
    true
}

/// A state-dict value → the tensor it describes; Ok(None) when it is not a tensor (or of an
/// element type we do not read, logged); Err when it claims to be a tensor but is malformed.
fn tensor_info(name: &str, value: &V, dir: &str) -> Result<Option<TensorInfo>, String> {
    let Kind::Reduce { callable, args } = &value.kind else { return Ok(None) };
    let (mut callable, mut args) = (callable, args);
    match class_of(callable) {
        Some(("torch._tensor", "_rebuild_from_type_v2")) => {
            let a = tuple(args, "_rebuild_from_type_v2 arguments", 3)?;
            (callable, args) = (&a[0], &a[2]);
        }
        Some(("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state")) => {
            let a = tuple(args, "_rebuild_parameter arguments", 1)?;
            match &a[0].kind {
                Kind::Reduce { callable: c, args: r } => (callable, args) = (c, r),
                _ => return Err("_rebuild_parameter does not wrap a tensor".into()),
            }
        }
        _ => {}
    }
    if class_of(callable) != Some(("torch._utils", "_rebuild_tensor_v2")) {
        return Ok(None);
    }
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks)
    let a = tuple(args, "_rebuild_tensor_v2 arguments", 4)?;
    let Kind::PersId(storage) = &a[0].kind else { return Err("the storage is not a persistent reference".into()) };
    // ('storage', storage_type, key, location, numel)
    let st = tuple(storage, "the storage reference", 5)?;
    let Some((_, storage_type)) = class_of(&st[1]) else { return Err("the storage type is not a class".into()) };
    let dtype = match storage_type {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        other => {
            tracing::warn!(tensor = name, storage = other, "skipping a tensor of an unsupported element type");
            return Ok(None);
        }
    };
    let Kind::Str(key) = &st[2].kind else { return Err("the storage key is not a string".into()) };
    if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
        return Err(format!("storage key '{key}' is not a plain name"));
    }
    let esize = dtype.size_in_bytes();
    let storage_numel = size(&st[4], "the storage size")?;
    let offset = size(&a[1], "the storage offset")?;
    let shape = sizes(&a[2], "the size")?;
    let stride = sizes(&a[3], "the stride")?;
    if stride.len() != shape.len() {
        return Err(format!("size {shape:?} and stride {stride:?} differ in rank"));
    }
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| format!("size {shape:?} overflows"))?;
    // An empty tensor (CT-CLIP's null_kv of shape (heads, 0, dim_head)) holds nothing: any
    // strides will do.
    let fortran = numel > 0 && shape.len() > 1 && !dense(&shape, &stride, false) && dense(&shape, &stride, true);
    if numel > 0 && !fortran && !dense(&shape, &stride, false) {
        return Err(format!("size {shape:?} with stride {stride:?} is not a dense tensor"));
    }
    let overflow = || format!("size {shape:?} at offset {offset} overflows");
    let bytes = numel.checked_mul(esize).ok_or_else(overflow)?;
    let start = offset.checked_mul(esize).ok_or_else(overflow)?;
    let end = start.checked_add(bytes).ok_or_else(overflow)?;
    let storage_bytes = storage_numel.checked_mul(esize).ok_or_else(|| format!("storage size {storage_numel} overflows"))?;
    if numel > 0 && end > storage_bytes {
        return Err(format!("size {shape:?} at offset {offset} needs {end} bytes of storage '{key}', which declares {storage_bytes}"));
    }
    Ok(Some(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        fortran,
        offset: start,
        bytes,
        entry: format!("{dir}/{key}"),
        storage_bytes,
    }))
}

/// The state dict inside a checkpoint object: a TorchScript module's state, a Lightning
/// checkpoint's `state_dict`, or the object itself.
fn state_dict(obj: &V) -> Option<&[(V, V)]> {
    let obj = match &obj.kind {
        Kind::Build { obj: inner, state } => match &inner.kind {
            Kind::Reduce { callable, .. } if class_of(callable) == Some(("__torch__", "Module")) => state,
            _ => obj,
        },
        _ => obj,
    };
    let Kind::Dict(items) = &obj.kind else { return None };
    for (k, v) in items {
        if matches!(&k.kind, Kind::Str(s) if s == "state_dict") {
            if let Kind::Dict(inner) = &v.kind {
                return Some(inner);
            }
        }
    }
    Some(items)
}

/// Open `path` as a zip (the `zip` crate, stored entries only) and list its tensors.
pub fn tensor_infos(path: &Path) -> Result<Vec<TensorInfo>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a readable zip file ({e})"))?;
    infos_of(&mut zip)
}

fn infos_of<R: Read + std::io::Seek>(zip: &mut zip::ZipArchive<R>) -> Result<Vec<TensorInfo>, String> {
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok()).map(|n| n.into_owned()).filter(|n| n.ends_with("data.pkl")).collect();
    if names.is_empty() {
        return Err("no data.pkl: not a PyTorch checkpoint".into());
    }
    let mut out = Vec::new();
    for pkl in names {
        let dir = pkl.strip_suffix(".pkl").unwrap_or(&pkl).to_string();
        let mut entry = zip.by_name(&pkl).map_err(|e| format!("{pkl}: {e}"))?;
        let mut data = Vec::new();
        entry.by_ref().take(MAX_PICKLE_BYTES + 1).read_to_end(&mut data).map_err(|e| format!("{pkl}: {e}"))?;
        if data.len() as u64 > MAX_PICKLE_BYTES {
            return Err(format!("{pkl} is over {MAX_PICKLE_BYTES} bytes"));
        }
        let obj = unpickle(&data).map_err(|e| format!("{pkl}: {e}"))?;
        let Some(items) = state_dict(&obj) else { continue };
        for (k, v) in items {
            let Kind::Str(name) = &k.kind else { continue };
            if let Some(info) = tensor_info(name, v, &dir).map_err(|e| format!("tensor {name}: {e}"))? {
                out.push(info);
            }
        }
    }
    Ok(out)
}

/// Read every tensor of a PyTorch zip checkpoint (element counts × sizes checked against the
/// stored bytes first; empty tensors skipped), on the CPU in their stored type.
pub fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| format!("not a readable zip file ({e})"))?;
    let infos = infos_of(&mut zip)?;
    // Views of one storage each read their bytes: all together at most 4× the file.
    let budget = file_len.saturating_mul(4).saturating_add(1 << 20);
    let mut total = 0u64;
    let mut out = Vec::with_capacity(infos.len());
    for t in infos {
        if t.bytes == 0 {
            continue;
        }
        let err = |m: String| format!("tensor {}: {m}", t.name);
        total = total.saturating_add(t.bytes as u64);
        if total > budget {
            return Err(err(format!("the tensors declare over {budget} bytes, more than the file ({file_len} bytes) can hold")));
        }
        let mut entry = zip.by_name(&t.entry).map_err(|e| err(format!("storage {}: {e}", t.entry)))?;
        let stored = entry.size();
        let end = (t.offset as u64).saturating_add(t.bytes as u64);
        if end > stored {
            return Err(err(format!("needs bytes {}..{end} of {}, which holds {stored}", t.offset, t.entry)));
        }
        std::io::copy(&mut entry.by_ref().take(t.offset as u64), &mut std::io::sink()).map_err(|e| err(e.to_string()))?;
        let mut buf = Vec::new();
        entry.by_ref().take(t.bytes as u64).read_to_end(&mut buf).map_err(|e| err(e.to_string()))?;
        if buf.len() != t.bytes {
            return Err(err(format!("{} ends after {} of the {} bytes it needs", t.entry, t.offset + buf.len(), end)));
        }
        let tensor = if t.fortran {
            let rev: Vec<usize> = t.shape.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..rev.len()).rev().collect();
            Tensor::from_raw_buffer(&buf, t.dtype, &rev, &Device::Cpu).and_then(|x| x.permute(perm))
        } else {
            Tensor::from_raw_buffer(&buf, t.dtype, &t.shape, &Device::Cpu)
        }
        .map_err(|e| err(e.to_string()))?;
        out.push((t.name, tensor));
    }
    Ok(out)
}

/// Check a safetensors file's header length against the file before anything reads it: the
/// first 8 bytes (little-endian u64) give the JSON header's length, which must fit the file
/// and stay under safetensors' own 100 MB limit.
pub fn check_safetensors_header(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; 8];
    f.read_exact(&mut head).map_err(|_| format!("{len} bytes: too short for a safetensors header"))?;
    let n = u64::from_le_bytes(head);
    if n > 100_000_000 {
        return Err(format!("declares a header of {n} bytes (safetensors allows 100000000)"));
    }
    if n.checked_add(8).is_none_or(|end| end > len) {
        return Err(format!("declares a header of {n} bytes but the file holds {len}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Pickle helpers: opcodes as torch.save (protocol 2) writes them.
    fn s(x: &str) -> Vec<u8> {
        let mut b = vec![b'X'];
        b.extend((x.len() as u32).to_le_bytes());
        b.extend(x.as_bytes());
        b
    }
    fn global(m: &str, n: &str) -> Vec<u8> {
        format!("c{m}\n{n}\n").into_bytes()
    }
    fn int(i: u32) -> Vec<u8> {
        let mut b = vec![0x8a, 8];
        b.extend((i as u64).to_le_bytes());
        b
    }
    fn tuple_of(items: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![b'('];
        for i in items {
            b.extend(i);
        }
        b.push(b't');
        b
    }

    /// A `_rebuild_tensor_v2` REDUCE of a float tensor on storage `key`.
    fn tensor(key: &str, numel: u32, offset: u32, size: &[u32], stride: &[u32]) -> Vec<u8> {
        let mut b = global("torch._utils", "_rebuild_tensor_v2");
        let pid = tuple_of(&[s("storage"), global("torch", "FloatStorage"), s(key), s("cpu"), int(numel)]);
        let mut storage = pid;
        storage.push(b'Q');
        let sizes: Vec<Vec<u8>> = size.iter().map(|&x| int(x)).collect();
        let strides: Vec<Vec<u8>> = stride.iter().map(|&x| int(x)).collect();
        b.extend(tuple_of(&[
            storage,
            int(offset),
            tuple_of(&sizes),
            tuple_of(&strides),
            vec![0x89],
            global("collections", "OrderedDict"),
            vec![b')', b'R'],
        ]));
        b.push(b'R');
        b
    }

    fn state_dict_pickle(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0x80, 2, b'}', b'('];
        for (k, v) in entries {
            b.extend(s(k));
            b.extend(v);
        }
        b.extend([b'u', b'.']);
        b
    }

    fn write_zip(tag: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("radbridge-pickle-{tag}-{}.pt", std::process::id()));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in files {
            z.start_file(*name, opts).unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
        p
    }

    #[test]
    fn a_small_state_dict_reads_with_views_and_fortran_order() {
        let pkl = state_dict_pickle(&[
            ("a", tensor("0", 6, 0, &[2, 3], &[3, 1])),
            ("b", tensor("0", 6, 2, &[2], &[1])),
            ("t", tensor("0", 6, 0, &[2, 3], &[1, 2])),
            ("scalar", tensor("1", 1, 0, &[], &[])),
        ]);
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let p = write_zip("ok", &[("archive/data.pkl", &pkl), ("archive/data/0", &data), ("archive/data/1", &7f32.to_le_bytes())]);
        let t: std::collections::BTreeMap<String, Tensor> = read_pth(&p).unwrap().into_iter().collect();
        assert_eq!(t["a"].to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]]);
        assert_eq!(t["b"].to_vec1::<f32>().unwrap(), vec![2.0, 3.0]);
        assert_eq!(t["t"].to_vec2::<f32>().unwrap(), vec![vec![0.0, 2.0, 4.0], vec![1.0, 3.0, 5.0]]);
        assert_eq!(t["scalar"].to_scalar::<f32>().unwrap(), 7.0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_declared_shape_larger_than_the_stored_bytes_is_refused_before_allocating() {
        // Declares 2^20 × 2^20 floats (4 TiB) in a 4-byte storage.
        let pkl = state_dict_pickle(&[("w", tensor("0", 1, 0, &[1 << 20, 1 << 20], &[1 << 20, 1]))]);
        let p = write_zip("huge", &[("archive/data.pkl", &pkl), ("archive/data/0", &[0u8; 4])]);
        let e = read_pth(&p).unwrap_err();
        assert!(e.starts_with("tensor w:") && e.contains("declares 4"), "{e}");
        // The storage declares enough but the zip entry holds less.
        let pkl = state_dict_pickle(&[("w", tensor("0", 1000, 0, &[1000], &[1]))]);
        let p2 = write_zip("short", &[("archive/data.pkl", &pkl), ("archive/data/0", &[0u8; 40])]);
        let e = read_pth(&p2).unwrap_err();
        assert!(e.starts_with("tensor w:") && e.contains("holds 40"), "{e}");
        // Element count overflows usize.
        let pkl = state_dict_pickle(&[("w", tensor("0", 1, 0, &[u32::MAX, u32::MAX, u32::MAX], &[1, 1, 1]))]);
        let p3 = write_zip("overflow", &[("archive/data.pkl", &pkl), ("archive/data/0", &[0u8; 4])]);
        let e = read_pth(&p3).unwrap_err();
        assert!(e.contains("overflows") || e.contains("not a dense"), "{e}");
        for p in [p, p2, p3] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn short_reduce_tuples_are_errors_not_panics() {
        // _rebuild_tensor_v2 with two arguments (candle removes index 3 and panics).
        let mut short = global("torch._utils", "_rebuild_tensor_v2");
        short.extend(tuple_of(&[int(0), int(1)]));
        short.push(b'R');
        let pkl = state_dict_pickle(&[("w", short)]);
        let p = write_zip("short-reduce", &[("a/data.pkl", &pkl)]);
        let e = tensor_infos(&p).unwrap_err();
        assert!(e.contains("tensor w") && e.contains("needs 4"), "{e}");
        std::fs::remove_file(p).unwrap();
        // _rebuild_from_type_v2 with an empty tuple, _rebuild_parameter with nothing.
        for (m, n) in [("torch._tensor", "_rebuild_from_type_v2"), ("torch._utils", "_rebuild_parameter")] {
            let mut v = global(m, n);
            v.extend([b')', b'R']);
            let pkl = state_dict_pickle(&[("p", v)]);
            let p = write_zip("short-wrap", &[("a/data.pkl", &pkl)]);
            let e = tensor_infos(&p).unwrap_err();
            assert!(e.contains("tensor p") && e.contains("has 0 values"), "{e}");
            std::fs::remove_file(p).unwrap();
        }
        // REDUCE / TUPLE3 / SETITEM on a short stack.
        for bad in [vec![0x80, 2, b'R', b'.'], vec![0x80, 2, b'K', 1, 0x87, b'.'], vec![b'}', b'K', 1, b's', b'.']] {
            assert!(unpickle(&bad).unwrap_err().contains("stack"), "{bad:?}");
        }
    }

    #[test]
    fn hostile_pickles_are_bounded() {
        // Memo doubling: each step puts a tuple of two references to the previous one (2^300
        // leaves if each reference were copied); refused for its depth, after linear work.
        let mut b = vec![b'N', b'r', 0, 0, 0, 0];
        for i in 0..300u32 {
            b.push(b'j');
            b.extend(i.to_le_bytes());
            b.push(b'j');
            b.extend(i.to_le_bytes());
            b.extend([0x86, b'r']);
            b.extend((i + 1).to_le_bytes());
            b.push(b'0');
        }
        b.push(b'.');
        let e = unpickle(&b).unwrap_err();
        assert!(e.contains("deep"), "{e}");
        // 64 shares of one tuple doubled 20 times stay cheap (shared, not cloned).
        let mut b = vec![b'N', b'q', 0];
        for i in 0..20u8 {
            b.extend([b'h', i, b'h', i, 0x86, b'q', i + 1, b'0']);
        }
        b.extend([b'h', 20, b'.']);
        assert_eq!(unpickle(&b).unwrap().depth, 21);
        // Deep nesting by TUPLE1.
        let mut b = vec![b'N'];
        b.extend(std::iter::repeat_n(0x85, 100_000));
        b.push(b'.');
        assert!(unpickle(&b).unwrap_err().contains("deep"));
        // A string longer than the data, a cut-short integer, an oversized LONG1, a GET never put.
        assert!(unpickle(&[b'X', 0xff, 0xff, 0xff, 0xff, b'a']).unwrap_err().contains("cut short"));
        assert!(unpickle(&[b'J', 1]).unwrap_err().contains("cut short"));
        assert!(unpickle(&[0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, b'.']).unwrap_err().contains("64 bits"));
        assert!(unpickle(&[b'h', 3, b'.']).unwrap_err().contains("memo 3"));
        assert!(unpickle(b"i").unwrap_err().contains("opcode"));
        assert!(unpickle(&[]).unwrap_err().contains("cut short"));
        // LONG1 is signed.
        assert!(matches!(unpickle(&[0x8a, 1, 0xff, b'.']).unwrap().kind, Kind::Int(-1)));
    }

    #[test]
    fn a_negative_size_or_odd_stride_is_refused() {
        let mut v = global("torch._utils", "_rebuild_tensor_v2");
        let pid = {
            let mut p = tuple_of(&[s("storage"), global("torch", "FloatStorage"), s("0"), s("cpu"), int(4)]);
            p.push(b'Q');
            p
        };
        v.extend(tuple_of(&[pid.clone(), int(0), tuple_of(&[vec![0x8a, 1, 0xff]]), tuple_of(&[int(1)])]));
        v.push(b'R');
        let pkl = state_dict_pickle(&[("neg", v)]);
        let p = write_zip("neg", &[("a/data.pkl", &pkl)]);
        assert!(tensor_infos(&p).unwrap_err().contains("the size is -1"));
        let pkl = state_dict_pickle(&[("empty", tensor("0", 0, 0, &[2, 0, 8], &[8, 8, 1]))]);
        let p0 = write_zip("empty", &[("a/data.pkl", &pkl), ("a/data/0", &[])]);
        assert_eq!(tensor_infos(&p0).unwrap()[0].bytes, 0);
        assert!(read_pth(&p0).unwrap().is_empty());
        std::fs::remove_file(p0).unwrap();
        let pkl = state_dict_pickle(&[("gap", tensor("0", 100, 0, &[2, 2], &[4, 2]))]);
        let p2 = write_zip("gap", &[("a/data.pkl", &pkl)]);
        assert!(tensor_infos(&p2).unwrap_err().contains("not a dense"));
        let pkl = state_dict_pickle(&[("key", tensor("../x", 4, 0, &[4], &[1]))]);
        let p3 = write_zip("key", &[("a/data.pkl", &pkl)]);
        assert!(tensor_infos(&p3).unwrap_err().contains("not a plain name"));
        for p in [p, p2, p3] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn safetensors_header_length_is_checked_against_the_file() {
        let p = std::env::temp_dir().join(format!("radbridge-st-{}.safetensors", std::process::id()));
        std::fs::write(&p, [0xffu8; 8]).unwrap();
        assert!(check_safetensors_header(&p).unwrap_err().contains("allows"));
        let mut b = 1000u64.to_le_bytes().to_vec();
        b.extend(b"{}");
        std::fs::write(&p, &b).unwrap();
        assert!(check_safetensors_header(&p).unwrap_err().contains("file holds 10"));
        std::fs::write(&p, [1, 2, 3]).unwrap();
        assert!(check_safetensors_header(&p).unwrap_err().contains("too short"));
        let mut b = 2u64.to_le_bytes().to_vec();
        b.extend(b"{}");
        std::fs::write(&p, &b).unwrap();
        check_safetensors_header(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}
