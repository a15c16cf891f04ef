//! The simulated account's data: orders, positions and wallets, and their lifecycle rules.
//!
//! Plain data with no I/O; [`super::account::Exchange`] changes it and
//! [`super::records`] writes it the way CoinDCX does.

use bigdecimal::BigDecimal;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Order status as written on the wire (lower case, `cancelled` with double L).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Initial,
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    PartiallyCancelled,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initial => "initial",
            Status::Open => "open",
            Status::PartiallyFilled => "partially_filled",
            Status::Filled => "filled",
            Status::Cancelled => "cancelled",
            Status::PartiallyCancelled => "partially_cancelled",
            Status::Rejected => "rejected",
        }
    }
    /// Accepts the docs' upper-case and single-L spellings too.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "initial" | "init" => Status::Initial,
            "open" => Status::Open,
            "partially_filled" => Status::PartiallyFilled,
            "filled" => Status::Filled,
            "cancelled" | "canceled" => Status::Cancelled,
            "partially_cancelled" | "partially_canceled" => Status::PartiallyCancelled,
            "rejected" => Status::Rejected,
            _ => return None,
        })
    }
    /// No record for the order may follow a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Filled | Status::Cancelled | Status::PartiallyCancelled | Status::Rejected
        )
    }
}

/// One futures order. Every fill happens at `price` (limit price, or the reference price of a
/// market order), so `avg_price` is `price` once anything has filled.
#[derive(Clone, Debug)]
pub struct Order {
    pub id: String,
    pub pair: usize,
    pub side: Side,
    pub market: bool,
    pub price: BigDecimal,
    pub total: BigDecimal,
    pub remaining: BigDecimal,
    pub cancelled: BigDecimal,
    pub avg_price: BigDecimal,
    pub fee_amount: BigDecimal,
    pub leverage: u32,
    pub ideal_margin: BigDecimal,
    /// Margin still reserved for the unfilled part; part of the wallet's `locked_balance`.
    pub locked_margin: BigDecimal,
    pub status: Status,
    pub notification: String,
    pub display_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Placed by the background activity (only those are cancelled at random).
    pub background: bool,
}

impl Order {
    pub fn filled(&self) -> BigDecimal {
        &self.total - &self.remaining - &self.cancelled
    }
}

/// One row per pair; `active_pos` is signed (long > 0).
#[derive(Clone, Debug)]
pub struct Position {
    pub id: String,
    pub pair: usize,
    pub active_pos: BigDecimal,
    pub avg_price: BigDecimal,
    /// Margin held by the open position; part of the wallet's `locked_balance`.
    pub locked_margin: BigDecimal,
    pub leverage: u32,
    pub mark_price: BigDecimal,
    pub updated_at: i64,
}

/// What a position record shows about the live orders of its pair.
pub struct OrderExposure {
    pub inactive_buy: BigDecimal,
    pub inactive_sell: BigDecimal,
    pub locked_order_margin: BigDecimal,
}

#[derive(Clone, Debug)]
pub struct Wallet {
    pub id: String,
    pub currency_id: String,
    pub currency: &'static str,
    /// Available balance.
    pub balance: BigDecimal,
    /// Order margins plus position margins.
    pub locked_balance: BigDecimal,
}

impl Wallet {
    pub fn total(&self) -> BigDecimal {
        &self.balance + &self.locked_balance
    }
    /// Move `amount` from available to locked (negative releases).
    pub fn lock(&mut self, amount: &BigDecimal) {
        self.balance -= amount;
        self.locked_balance += amount;
    }
}
