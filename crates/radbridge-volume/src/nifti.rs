//! NIfTI-1 and NIfTI-2 (`.nii`, `.nii.gz`), read and write.
//!
//! Written by hand rather than with the `nifti` crate: that crate reads NIfTI-1 only and
//! converts through ndarray, while we need NIfTI-2, int16 kept as int16 (memory), and both
//! header transforms to choose from. The header layouts follow nifti1.h / nifti2.h.
//!
//! Spatial transform (nifti1.h, "METHOD 3 / 2 / 1"): sform when sform_code > 0, else qform
//! when qform_code > 0, else pixdim scaling only (with a warning: orientation unknown).
//! This is also nibabel's precedence. NIfTI world space is RAS; we convert to LPS.

use std::io::{Read, Write};
use std::path::Path;

use super::error::{Result, VolumeError};
use super::geometry::Affine;
use super::{OpenOptions, SourceMeta, Volume, Voxels, Warning, WarningCode};

/// The header fields we use, for both versions.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: u8,
    pub big_endian: bool,
    pub dim: [i64; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub descrip: String,
}

struct Cursor<'a> {
    b: &'a [u8],
    be: bool,
}

impl Cursor<'_> {
    fn bytes<const N: usize>(&self, o: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[o..o + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, o: usize) -> i16 {
        i16::from_le_bytes(self.bytes(o))
    }
    fn i32(&self, o: usize) -> i32 {
        i32::from_le_bytes(self.bytes(o))
    }
    fn i64(&self, o: usize) -> i64 {
        i64::from_le_bytes(self.bytes(o))
    }
    fn f32(&self, o: usize) -> f64 {
        f32::from_le_bytes(self.bytes(o)) as f64
    }
    fn f64(&self, o: usize) -> f64 {
        f64::from_le_bytes(self.bytes(o))
    }
}

/// Byte offsets (and widths) of the header fields we read, per version (nifti1.h, nifti2.h).
struct Layout {
    magic: usize,
    single_magic: &'static [u8; 4],
    pair_magic: &'static [u8; 4],
    dim: usize,
    dim_size: usize,
    /// datatype, then bitpix right after it.
    datatype: usize,
    /// Width of real fields (pixdim, scaling, quaternion, srow): 4 or 8.
    real: usize,
    pixdim: usize,
    vox_offset: usize,
    /// scl_slope, then scl_inter.
    scl: usize,
    /// qform_code, then sform_code; each `code` bytes wide.
    qform_code: usize,
    code: usize,
    /// quatern_b, c, d, then qoffset_x, y, z.
    quatern: usize,
    srow: usize,
    descrip: usize,
}

const NIFTI1: Layout = Layout {
    magic: 344,
    single_magic: b"n+1\0",
    pair_magic: b"ni1\0",
    dim: 40,
    dim_size: 2,
    datatype: 70,
    real: 4,
    pixdim: 76,
    vox_offset: 108,
    scl: 112,
    qform_code: 252,
    code: 2,
    quatern: 256,
    srow: 280,
    descrip: 148,
};

const NIFTI2: Layout = Layout {
    magic: 4,
    single_magic: b"n+2\0",
    pair_magic: b"ni2\0",
    dim: 16,
    dim_size: 8,
    datatype: 12,
    real: 8,
    pixdim: 104,
    vox_offset: 168,
    scl: 176,
    qform_code: 344,
    code: 4,
    quatern: 352,
    srow: 400,
    descrip: 240,
};

/// Parse a NIfTI-1 or NIfTI-2 header from the start of `b`.
pub fn parse_header(path: &Path, b: &[u8]) -> Result<Header> {
    if b.len() < 4 {
        return Err(VolumeError::Truncated { path: path.into(), what: "NIfTI header", expected: 348, found: b.len() as u64 });
    }
    let le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (version, big_endian, need) = match (le, be) {
        (348, _) => (1u8, false, 348usize),
        (_, 348) => (1, true, 348),
        (540, _) => (2, false, 540),
        (_, 540) => (2, true, 540),
        _ => {
            return Err(VolumeError::NotNifti {
                path: path.into(),
                reason: format!("sizeof_hdr is {le}, expected 348 (NIfTI-1) or 540 (NIfTI-2)"),
            })
        }
    };
    if b.len() < need {
        return Err(VolumeError::Truncated { path: path.into(), what: "NIfTI header", expected: need as u64, found: b.len() as u64 });
    }
    let c = Cursor { b, be: big_endian };
    let bad = |reason: String| VolumeError::BadNiftiHeader { path: path.into(), reason };
    let l = if version == 1 { &NIFTI1 } else { &NIFTI2 };
    let magic = &b[l.magic..l.magic + 4];
    if magic == l.pair_magic {
        return Err(bad(format!(
            "a .hdr/.img pair (magic {:?}) is not supported; convert it to a single .nii",
            String::from_utf8_lossy(&magic[..3])
        )));
    }
    if magic != l.single_magic {
        return Err(VolumeError::NotNifti {
            path: path.into(),
            reason: format!(
                "bad magic {:?} (expected {:?})",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(&l.single_magic[..3])
            ),
        });
    }
    let real = |o: usize| if l.real == 4 { c.f32(o) } else { c.f64(o) };
    let code = |o: usize| if l.code == 2 { c.i16(o) as i32 } else { c.i32(o) };
    let h = Header {
        version,
        big_endian,
        dim: std::array::from_fn(|i| if l.dim_size == 2 { c.i16(l.dim + 2 * i) as i64 } else { c.i64(l.dim + 8 * i) }),
        datatype: c.i16(l.datatype),
        bitpix: c.i16(l.datatype + 2),
        pixdim: std::array::from_fn(|i| real(l.pixdim + l.real * i)),
        vox_offset: if version == 1 { c.f32(l.vox_offset) } else { c.i64(l.vox_offset) as f64 },
        scl_slope: real(l.scl),
        scl_inter: real(l.scl + l.real),
        qform_code: code(l.qform_code),
        sform_code: code(l.qform_code + l.code),
        quatern: std::array::from_fn(|i| real(l.quatern + l.real * i)),
        qoffset: std::array::from_fn(|i| real(l.quatern + l.real * (3 + i))),
        srow: std::array::from_fn(|r| std::array::from_fn(|k| real(l.srow + l.real * (4 * r + k)))),
        descrip: String::from_utf8_lossy(&b[l.descrip..l.descrip + 80]).trim_end_matches('\0').to_string(),
    };
    if h.dim[0] < 1 || h.dim[0] > 7 {
        return Err(bad(format!("dim[0] = {} (must be 1..7)", h.dim[0])));
    }
    for a in 1..=h.dim[0] as usize {
        if h.dim[a] < 0 {
            return Err(bad(format!("dim[{a}] = {} is negative", h.dim[a])));
        }
    }
    Ok(h)
}

impl Header {
    /// Spatial dims (1 where absent).
    pub fn dims3(&self) -> [usize; 3] {
        [1, 2, 3].map(|a| if (a as i64) <= self.dim[0] { self.dim[a].max(1) as usize } else { 1 })
    }

    /// Number of 3-D volumes (product of dims 4..7); None when the product overflows.
    pub fn n_volumes(&self) -> Option<u64> {
        (4..=7).filter(|&a| (a as i64) <= self.dim[0]).try_fold(1u64, |acc, a| acc.checked_mul(self.dim[a].max(1) as u64))
    }

    /// Voxels of one 3-D volume; None when the product overflows (64-bit NIfTI-2 dimensions).
    pub fn voxels3(&self) -> Option<u64> {
        self.dims3().iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    }

    fn bytes_per_voxel(&self) -> Option<usize> {
        Some(match self.datatype {
            2 | 256 => 1,
            4 | 512 => 2,
            8 | 16 | 768 => 4,
            64 | 1024 | 1280 => 8,
            _ => return None,
        })
    }

    /// The qform affine (RAS), as nifti1.h method 2.
    pub fn qform_ras(&self) -> Affine {
        let [b, c, d] = self.quatern;
        let a2 = 1.0 - (b * b + c * c + d * d);
        let (a, b, c, d) = if a2 < 1e-7 {
            // Rotation by 180°: a = 0, renormalise (b, c, d).
            let s = (b * b + c * c + d * d).sqrt();
            (0.0, b / s, c / s, d / s)
        } else {
            (a2.sqrt(), b, c, d)
        };
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let (dx, dy, dz) = (self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac);
        let cols = [
            [r[0][0] * dx, r[1][0] * dx, r[2][0] * dx],
            [r[0][1] * dy, r[1][1] * dy, r[2][1] * dy],
            [r[0][2] * dz, r[1][2] * dz, r[2][2] * dz],
        ];
        Affine::from_columns(cols, self.qoffset)
    }

    pub fn sform_ras(&self) -> Affine {
        let s = &self.srow;
        Affine([s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]])
    }

    /// The voxel-to-LPS affine by the standard's precedence, with warnings.
    pub fn affine_lps(&self, warnings: &mut Vec<Warning>) -> Affine {
        let finite = |a: &Affine| a.0.iter().flatten().all(|v| v.is_finite());
        // A transform holding NaN or infinite values is not used (with a warning): the next
        // method in the standard's order is.
        let sform_ok = self.sform_code > 0 && finite(&self.sform_ras());
        let qform_ok = self.qform_code > 0 && finite(&self.qform_ras());
        if (self.sform_code > 0 && !sform_ok) || (self.qform_code > 0 && !qform_ok) {
            warnings.push(Warning::new(
                WarningCode::NoSpatialTransform,
                format!(
                    "the {} holds NaN or infinite values and is not used",
                    match (self.sform_code > 0 && !sform_ok, self.qform_code > 0 && !qform_ok) {
                        (true, true) => "sform and the qform",
                        (true, false) => "sform",
                        _ => "qform",
                    }
                ),
            ));
        }
        let ras = if sform_ok {
            if qform_ok {
                let q = self.qform_ras();
                let s = self.sform_ras();
                if q.max_abs_diff(&s) > 1e-3 {
                    warnings.push(Warning::new(
                        WarningCode::QformSformMismatch,
                        format!(
                            "qform and sform disagree (max difference {:.3} mm); the sform is used, as the standard says",
                            q.max_abs_diff(&s)
                        ),
                    ));
                }
            }
            self.sform_ras()
        } else if qform_ok {
            self.qform_ras()
        } else {
            warnings.push(Warning::new(
                WarningCode::NoSpatialTransform,
                "neither sform nor qform is set: orientation is unknown; using voxel sizes only (NIfTI method 1)",
            ));
            let p = |i: usize| if self.pixdim[i] > 0.0 && self.pixdim[i].is_finite() { self.pixdim[i] } else { 1.0 };
            Affine::from_columns([[p(1), 0.0, 0.0], [0.0, p(2), 0.0], [0.0, 0.0, p(3)]], [0.0; 3])
        };
        ras.flip_xy()
    }
}

/// Counts bytes as they are read, to say how much a truncated file held.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Read exactly `buf.len()` bytes, turning end-of-data into a named error.
fn fill(r: &mut Counting<Box<dyn Read>>, buf: &mut [u8], path: &Path, gz: bool, what: &'static str, expected: u64) -> Result<()> {
    use std::io::ErrorKind::UnexpectedEof;
    r.read_exact(buf).map_err(|e| match (gz, e.kind()) {
        (true, UnexpectedEof) => {
            VolumeError::Corrupt { path: path.into(), reason: format!("gzip stream is cut short after {} bytes of data", r.n) }
        }
        (true, _) => VolumeError::Corrupt { path: path.into(), reason: format!("gzip stream is damaged ({e})") },
        (false, UnexpectedEof) => VolumeError::Truncated { path: path.into(), what, expected, found: r.n },
        (false, _) => VolumeError::io(path, e),
    })
}

/// Read a NIfTI file into a volume (first 3-D volume of 4-D data, with a warning).
/// Voxel data are streamed from the (possibly gzip-compressed) file straight into the output
/// buffer, so peak memory stays close to the size of the voxels.
pub fn read(path: &Path, options: &OpenOptions) -> Result<Volume> {
    options.progress.stage("read", 1);
    let file = std::fs::File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let len = file.metadata().map_err(|e| VolumeError::io(path, e))?.len();
    if len == 0 {
        return Err(VolumeError::EmptyFile { path: path.into() });
    }
    let mut buffered = std::io::BufReader::with_capacity(1 << 20, file);
    let gz = {
        use std::io::BufRead;
        let head = buffered.fill_buf().map_err(|e| VolumeError::io(path, e))?;
        head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
    };
    let inner: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut r = Counting { inner, n: 0 };
    // Header: 348 (NIfTI-1) or 540 (NIfTI-2) bytes, told apart by its first field.
    let mut hdr = vec![0u8; 540];
    let mut got = 0;
    let mut want = 4;
    while got < want {
        match r.read(&mut hdr[got..want]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if gz => return Err(VolumeError::Corrupt { path: path.into(), reason: format!("gzip stream is damaged ({e})") }),
            Err(e) => return Err(VolumeError::io(path, e)),
        }
        if got == 4 && want == 4 {
            let first = [hdr[0], hdr[1], hdr[2], hdr[3]];
            want = if i32::from_le_bytes(first) == 540 || i32::from_be_bytes(first) == 540 { 540 } else { 348 };
        }
    }
    hdr.truncate(got);
    let h = parse_header(path, &hdr)?;
    let mut warnings = Vec::new();
    let dims = h.dims3();
    let bpv = h.bytes_per_voxel().ok_or_else(|| VolumeError::BadNiftiHeader {
        path: path.into(),
        reason: format!("datatype {} is not supported (need an integer or real scalar type)", h.datatype),
    })?;
    let bad = |reason: String| VolumeError::BadNiftiHeader { path: path.into(), reason };
    let nvox = h.voxels3().ok_or_else(|| bad(format!("dimensions {:?} overflow a 64-bit voxel count", &h.dim[1..4])))?;
    if nvox > options.max_voxels {
        return Err(VolumeError::TooLarge { path: path.into(), voxels: nvox, limit: options.max_voxels });
    }
    let nvols = h.n_volumes().ok_or_else(|| bad(format!("dimensions {:?} overflow a 64-bit volume count", &h.dim[4..8])))?;
    if nvols > 1 {
        warnings.push(Warning::new(
            WarningCode::FourDimensional,
            format!("{}-D image with {nvols} volumes: only the first volume is loaded", h.dim[0]),
        ));
    }
    let hdr_len = hdr.len() as u64;
    // vox_offset: a float in NIfTI-1; anything not a plausible byte offset is refused before
    // it is used in arithmetic.
    if !h.vox_offset.is_finite() || h.vox_offset < 0.0 || h.vox_offset > (1u64 << 53) as f64 {
        return Err(bad(format!("vox_offset {} is not a byte offset", h.vox_offset)));
    }
    let offset = if h.vox_offset < hdr_len as f64 { hdr_len } else { h.vox_offset as u64 };
    let need = nvox
        .checked_mul(bpv as u64)
        .and_then(|b| b.checked_add(offset))
        .ok_or_else(|| bad(format!("vox_offset {offset} plus {nvox} voxels of {bpv} bytes overflows")))?;
    // Compare what the header declares with the file before allocating anything for it: a
    // plain file must hold it; a gzip stream cannot inflate more than about 1032 times its
    // size (deflate's largest ratio), so a small .nii.gz cannot declare gigabytes.
    if !gz && len < need {
        return Err(VolumeError::Truncated { path: path.into(), what: "NIfTI voxel data", expected: need, found: len });
    }
    const MAX_DEFLATE_RATIO: u64 = 1032;
    if gz && need > len.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
        return Err(VolumeError::Corrupt {
            path: path.into(),
            reason: format!("the header declares {need} bytes of data but a gzip file of {len} bytes cannot hold that many"),
        });
    }
    // For gzip the real length is only known at the end: reserve what the file could hold at
    // a usual ratio and let the buffer grow if it holds more.
    let reserve = |n: usize| if gz { n.min(usize::try_from(len.saturating_mul(16)).unwrap_or(usize::MAX)) } else { n };
    // Skip extensions up to vox_offset.
    std::io::copy(&mut (&mut r).take(offset - hdr_len), &mut std::io::sink()).map_err(|e| VolumeError::io(path, e))?;
    if r.n < offset && !gz {
        return Err(VolumeError::Truncated { path: path.into(), what: "NIfTI voxel data", expected: need, found: r.n });
    }
    let n = usize::try_from(nvox).map_err(|_| VolumeError::TooLarge { path: path.into(), voxels: nvox, limit: options.max_voxels })?;
    // scl_slope 0 (or not finite) means "no scaling".
    let scaled = h.scl_slope != 0.0 && h.scl_slope.is_finite() && !(h.scl_slope == 1.0 && h.scl_inter == 0.0);
    let (slope, inter) = if scaled { (h.scl_slope, if h.scl_inter.is_finite() { h.scl_inter } else { 0.0 }) } else { (1.0, 0.0) };
    let be = h.big_endian;
    const CHUNK: usize = 1 << 16;
    let mut buf = vec![0u8; CHUNK * bpv];
    let voxels = if h.datatype == 4 && !scaled {
        let mut out: Vec<i16> = Vec::with_capacity(reserve(n));
        let mut done = 0;
        while done < n {
            let k = CHUNK.min(n - done);
            fill(&mut r, &mut buf[..k * 2], path, gz, "NIfTI voxel data", need)?;
            out.extend(buf[..k * 2].chunks_exact(2).map(|b| {
                if be {
                    i16::from_be_bytes([b[0], b[1]])
                } else {
                    i16::from_le_bytes([b[0], b[1]])
                }
            }));
            done += k;
        }
        Voxels::I16(out)
    } else {
        let mut out: Vec<f32> = Vec::with_capacity(reserve(n));
        let mut all_i16 = true;
        let mut done = 0;
        while done < n {
            let k = CHUNK.min(n - done);
            fill(&mut r, &mut buf[..k * bpv], path, gz, "NIfTI voxel data", need)?;
            let c = Cursor { b: &buf[..k * bpv], be };
            for i in 0..k {
                let o = i * bpv;
                let raw = match h.datatype {
                    2 => c.b[o] as f64,
                    256 => c.b[o] as i8 as f64,
                    4 => c.i16(o) as f64,
                    512 => u16::from_le_bytes(c.bytes(o)) as f64,
                    8 => c.i32(o) as f64,
                    768 => u32::from_le_bytes(c.bytes(o)) as f64,
                    16 => c.f32(o),
                    64 => c.f64(o),
                    1024 => c.i64(o) as f64,
                    1280 => u64::from_le_bytes(c.bytes(o)) as f64,
                    _ => unreachable!("checked by bytes_per_voxel"),
                };
                let v = raw * slope + inter;
                all_i16 &= v.fract() == 0.0 && v >= i16::MIN as f64 && v <= i16::MAX as f64;
                out.push(v as f32);
            }
            done += k;
        }
        if all_i16 {
            Voxels::I16(out.iter().map(|&v| v as i16).collect())
        } else {
            Voxels::F32(out)
        }
    };
    if gz {
        // Read on to the end of the gzip stream (at most 64 MiB past the voxels) so that its
        // CRC is checked: a damaged stream is refused rather than shown.
        if let Err(e) = std::io::copy(&mut (&mut r).take(64 << 20), &mut std::io::sink()) {
            return Err(VolumeError::Corrupt { path: path.into(), reason: format!("gzip stream is damaged ({e})") });
        }
    }
    if let Voxels::F32(v) = &voxels {
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            warnings.push(Warning::new(WarningCode::NonFiniteValues, format!("{bad} voxels are NaN or infinite")));
        }
    }
    let affine = h.affine_lps(&mut warnings);
    Ok(Volume {
        dims,
        voxels,
        affine,
        meta: SourceMeta {
            path: path.into(),
            format: super::SourceFormat::Nifti,
            format_detail: format!("NIfTI-{}{}", h.version, if h.big_endian { " big-endian" } else { "" }),
            modality: None,
            series_uid: None,
            series_description: (!h.descrip.is_empty()).then(|| h.descrip.clone()),
            files: vec![path.into()],
            padding_voxels: 0,
            patient: Default::default(),
            instances: vec![],
        },
        warnings,
    })
}

/// Quaternion (b, c, d), qfac and offset for a rigid (rotation × scale) RAS affine; None when
/// the affine has shear (e.g. gantry tilt), which a qform cannot express.
fn to_quatern(a: &Affine) -> Option<([f64; 3], f64)> {
    let sp = a.spacing();
    if sp.iter().any(|&s| s <= 0.0) {
        return None;
    }
    let d = a.directions();
    // Orthogonality check.
    for (x, y) in [(0, 1), (0, 2), (1, 2)] {
        if super::geometry::dot(d[x], d[y]).abs() > 1e-4 {
            return None;
        }
    }
    // R with columns d0, d1, d2; make it proper (det +1) with qfac.
    let mut r = [[d[0][0], d[1][0], d[2][0]], [d[0][1], d[1][1], d[2][1]], [d[0][2], d[1][2], d[2][2]]];
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    // Rotation matrix to quaternion (nifti1_io's algorithm, written out).
    let tr = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (qa, qb, qc, qd);
    if tr > 0.5 {
        qa = 0.5 * tr.sqrt();
        qb = 0.25 * (r[2][1] - r[1][2]) / qa;
        qc = 0.25 * (r[0][2] - r[2][0]) / qa;
        qd = 0.25 * (r[1][0] - r[0][1]) / qa;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            qb = b;
            qc = 0.25 * (r[0][1] + r[1][0]) / b;
            qd = 0.25 * (r[0][2] + r[2][0]) / b;
            qa = 0.25 * (r[2][1] - r[1][2]) / b;
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            qc = c;
            qb = 0.25 * (r[0][1] + r[1][0]) / c;
            qd = 0.25 * (r[1][2] + r[2][1]) / c;
            qa = 0.25 * (r[0][2] - r[2][0]) / c;
        } else {
            let dd = 0.5 * zd.sqrt();
            qd = dd;
            qb = 0.25 * (r[0][2] + r[2][0]) / dd;
            qc = 0.25 * (r[1][2] + r[2][1]) / dd;
            qa = 0.25 * (r[1][0] - r[0][1]) / dd;
        }
    }
    let s = if qa < 0.0 { -1.0 } else { 1.0 };
    Some(([qb * s, qc * s, qd * s], qfac))
}

/// Write a volume as NIfTI-1 (`.nii` or, by extension, `.nii.gz`): int16 when the volume is
/// int16, float32 otherwise; sform (code 1, scanner) always, qform too when the affine is rigid.
pub fn write(volume: &Volume, path: &Path) -> Result<()> {
    write_described(volume, path, "radbridge: HU, converted")
}

/// As [`write`], with `description` (at most 79 bytes are kept) in the header's `descrip`.
pub fn write_described(volume: &Volume, path: &Path, description: &str) -> Result<()> {
    let werr = |reason: String| VolumeError::Write { path: path.into(), reason };
    let ras = volume.affine.flip_xy();
    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f64| h[o..o + 4].copy_from_slice(&(v as f32).to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dims = volume.dims;
    if dims.iter().any(|&d| d > i16::MAX as usize) {
        return Err(werr(format!("dimension {:?} too large for NIfTI-1", dims)));
    }
    put_i16(&mut h, 40, 3);
    for (a, &d) in dims.iter().enumerate() {
        put_i16(&mut h, 42 + 2 * a, d as i16);
    }
    for a in 4..8 {
        put_i16(&mut h, 40 + 2 * a, 1);
    }
    let (datatype, bitpix) = match volume.voxels {
        Voxels::I16(_) => (4i16, 16i16),
        Voxels::F32(_) => (16, 32),
    };
    put_i16(&mut h, 70, datatype);
    put_i16(&mut h, 72, bitpix);
    let sp = ras.spacing();
    let quat = to_quatern(&ras);
    put_f32(&mut h, 76, quat.map(|q| q.1).unwrap_or(1.0));
    for (a, s) in sp.iter().enumerate() {
        put_f32(&mut h, 80 + 4 * a, *s);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0); // scl_slope
    put_f32(&mut h, 116, 0.0);
    h[123] = 2; // xyzt_units: mm
    let descrip = &description.as_bytes()[..description.len().min(79)];
    h[148..148 + descrip.len()].copy_from_slice(descrip);
    if let Some((q, _)) = quat {
        put_i16(&mut h, 252, 1);
        for (i, v) in q.iter().enumerate() {
            put_f32(&mut h, 256 + 4 * i, *v);
        }
        let o = ras.origin();
        for (i, v) in o.iter().enumerate() {
            put_f32(&mut h, 268 + 4 * i, *v);
        }
    }
    put_i16(&mut h, 254, 1);
    for r in 0..3 {
        for k in 0..4 {
            put_f32(&mut h, 280 + 16 * r + 4 * k, ras.0[r][k]);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let mut body = Vec::with_capacity(352 + volume.voxels.byte_len());
    body.extend_from_slice(&h);
    match &volume.voxels {
        Voxels::I16(v) => v.iter().for_each(|x| body.extend_from_slice(&x.to_le_bytes())),
        Voxels::F32(v) => v.iter().for_each(|x| body.extend_from_slice(&x.to_le_bytes())),
    }
    let gz = path.to_string_lossy().to_lowercase().ends_with(".gz");
    let mut file = crate::atomic::AtomicFile::create(path).map_err(|e| VolumeError::io(path, e))?;
    if gz {
        let mut enc = flate2::write::GzEncoder::new(&mut file, flate2::Compression::new(1));
        enc.write_all(&body).and_then(|_| enc.finish().map(|_| ())).map_err(|e| VolumeError::io(path, e))?;
    } else {
        file.write_all(&body).map_err(|e| VolumeError::io(path, e))?;
    }
    file.commit().map_err(|e| VolumeError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_volumes_read_back_and_leave_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("radbridge-nifti-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let voxels: Vec<i16> = (0..2 * 3 * 4).map(|i| i as i16 * 7 - 40).collect();
        let v = Volume {
            dims: [2, 3, 4],
            voxels: Voxels::I16(voxels.clone()),
            affine: Affine::identity(),
            meta: Default::default(),
            warnings: Vec::new(),
        };
        for name in ["a.nii", "b.nii.gz"] {
            let p = dir.join(name);
            write(&v, &p).unwrap();
            let back = read(&p, &OpenOptions::default()).unwrap();
            assert_eq!(back.dims, [2, 3, 4], "{name}");
            assert_eq!(back.voxels, Voxels::I16(voxels.clone()), "{name}");
        }
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["a.nii", "b.nii.gz"]);
        // A missing folder is an error naming the file, not a panic.
        let e = write(&v, &dir.join("missing").join("c.nii")).unwrap_err();
        assert!(e.to_string().contains("c.nii"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
